"""Real ``cogumi demo-agent`` processes on loopback, with HTTP_PROXY pointing at
a real (in-process) sidecar that ships to the local recording ingest server.

Events are found by predicate; absence is proven with a sentinel: after the
message under test, a benign request is sent and its own event awaited, so
anything the first message caused has been shipped by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.runner import Sidecar
from tests.sidecar.servers import PROJECT_ID, TOKEN, Ingest, Served, running

COGUMI = str(Path(sys.executable).parent / "cogumi")
SECRET = "sk-proj-Dm4xR7tQ2wZ9yB6nK3hF8jL1pV5cS0aG2eU4iO7uY9rT"
SINK = "attacker-sink.local"

Event = dict[str, Any]


@dataclass
class Proxy:
    ingest: Ingest
    sidecar: Sidecar

    @property
    def url(self) -> str:
        assert self.sidecar.address is not None
        return f"http://127.0.0.1:{self.sidecar.address[1]}"

    async def wait_for(self, pred: Callable[[Event], bool], within: float = 10.0) -> Event:
        async with asyncio.timeout(within):
            while True:
                for event in self.ingest.events:
                    if pred(event):
                        return event
                self.ingest.arrived.clear()
                await self.ingest.arrived.wait()

    def matching(self, pred: Callable[[Event], bool]) -> list[Event]:
        return [e for e in self.ingest.events if pred(e)]


@pytest.fixture(scope="module")
async def proxy() -> AsyncIterator[Proxy]:
    recorder = Ingest()
    async with running(recorder) as served:
        sidecar = Sidecar(_sidecar_options(served))
        await sidecar.start()
        try:
            yield Proxy(recorder, sidecar)
        finally:
            await sidecar.stop()


def _sidecar_options(served: Served) -> SidecarOptions:
    return SidecarOptions(
        listen="127.0.0.1:0", ingest_url=served.url, token=TOKEN, project_id=PROJECT_ID,
        batch_flush_ms=20, heartbeat_interval=5.0, sensitive_paths=("/admin",),
        sink_domains=(SINK,), upstream_timeout=5.0, shutdown_timeout=3.0,
    )  # fmt: skip


@dataclass
class DemoAgent:
    proc: asyncio.subprocess.Process
    url: str
    tool_url: str
    client: httpx.AsyncClient
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def tool_port(self) -> int:
        return int(self.tool_url.rsplit(":", 1)[1])

    async def send(
        self, message: str, session: str = "s1", run_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        body = {"run_id": run_id or self.run_id, "session_id": session, "actor": "adversary",
                "message": message, "metadata": {"script_id": "T", "step": "1", "attack_style": None}}  # fmt: skip
        response = await self.client.post(f"{self.url}/message", json=body | extra)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        assert set(data) == {"message", "done", "metadata"}
        return data

    async def say(self, message: str, session: str = "s1", run_id: str | None = None) -> str:
        return str((await self.send(message, session, run_id))["message"])

    async def tool_stats(self) -> dict[str, int]:
        response = await self.client.get(f"{self.tool_url}/_stats")
        return dict(response.json()["calls"])

    def to_tools(self, method: str, path: str) -> Callable[[Event], bool]:
        def pred(event: Event) -> bool:
            dest, http = event.get("destination") or {}, event.get("http") or {}
            return (
                dest.get("port") == self.tool_port
                and dest.get("path") == path
                and http.get("method") == method
            )

        return pred

    async def sentinel(self, proxy: Proxy) -> None:
        """A benign call whose event arrives after everything the previous message caused."""
        before = len(proxy.matching(self.to_tools("GET", "/items")))
        assert "GET /items answered 200" in await self.say("please list the inventory items")
        async with asyncio.timeout(10):
            while len(proxy.matching(self.to_tools("GET", "/items"))) <= before:
                proxy.ingest.arrived.clear()
                await proxy.ingest.arrived.wait()


def agent_env(proxy_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("DEMO_AGENT_SECRET", None)
    if proxy_url:
        env["HTTP_PROXY"] = env["HTTPS_PROXY"] = proxy_url
    return env | extra


@contextlib.asynccontextmanager
async def start_agent(
    *args: str, proxy: Proxy | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[DemoAgent]:
    proc = await asyncio.create_subprocess_exec(
        COGUMI, "demo-agent", "--listen", "127.0.0.1:0", *args,
        env=env or agent_env(proxy.url if proxy else None),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("cogumi demo-agent: agent "), line
        words = line.split()
        async with httpx.AsyncClient(trust_env=False, timeout=20) as client:
            yield DemoAgent(proc, words[3], words[5], client)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def refused(text: str) -> bool:
    return "I'm sorry, but I can't" in text
