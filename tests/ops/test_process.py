"""Real processes: ``cogumi serve`` shuts down gracefully (an in-flight request finishes,
a running campaign goes back to the queue, JSON logs on stderr), and
``cogumi admin quotas set`` changes an org's limits from the shell."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cogumi.db.engine import make_engine, make_sessionmaker
from cogumi.runs.models import Run
from cogumi.tenancy.models import AuditLog
from tests.factories import PASSWORD, Accounts, unique_email
from tests.projects.agent_server import AgentServer, Reply
from tests.servers import free_port

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env.update(COGUMI_DATA_DIR=str(tmp_path / "data"), COGUMI_RETENTION_INTERVAL_SEC="0",
               COGUMI_SECRET_KEY="process-test-key", **extra)  # fmt: skip
    return env


async def _start_serve(tmp_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cogumi", "serve", "--port", str(port),
        env=_env(tmp_path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as probe:
        while True:
            try:
                if (await probe.get(base + "/api/health")).status_code == 200:
                    return process, base
            except httpx.TransportError:
                pass
            assert process.returncode is None and time.monotonic() < deadline, "serve did not start"
            await asyncio.sleep(0.1)


async def _signed_in(base: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    response = await client.post(
        "/api/auth/register", json={"email": unique_email("ops"), "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


async def test_serve_finishes_requests_and_hands_runs_back_on_sigterm(tmp_path: Path) -> None:
    routes = {("POST", "/health"): Reply(body={"ok": True}, delay=2.0),
              ("POST", "/message"): Reply(body={"message": "No.", "done": False}, delay=1.0)}  # fmt: skip
    async with AgentServer(routes) as agent:
        process, base = await _start_serve(tmp_path)
        client = await _signed_in(base)
        try:
            project = await client.post(
                "/api/projects", json={"name": "graceful", "agent_test_url": agent.url}
            )
            assert project.status_code == 201, project.text
            project_id = project.json()["id"]
            run = await client.post(f"/api/projects/{project_id}/runs", json={"scripts": ["S1"]})
            assert run.status_code == 201, run.text
            run_id = run.json()["id"]
            for _ in range(100):
                if (await client.get(f"/api/runs/{run_id}")).json()["status"] == "running":
                    break
                await asyncio.sleep(0.1)
            in_flight = asyncio.ensure_future(
                client.post(f"/api/projects/{project_id}/validate-agent-endpoint", json={},
                            headers={"X-Request-ID": "graceful-1"})
            )  # fmt: skip
            first_message = asyncio.Event()
            streamed = asyncio.ensure_future(_stream_lines(client, run_id, first_message))
            await asyncio.wait_for(first_message.wait(), timeout=10)
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            answered = await in_flight
            # An open live stream is ended cleanly (the client then resumes elsewhere
            # with Last-Event-ID), not cut off mid-response.
            lines_seen = await asyncio.wait_for(streamed, timeout=30)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        finally:
            await client.aclose()
            if process.returncode is None:
                process.kill()
    assert answered.status_code == 200, answered.text
    assert answered.headers["X-Request-ID"] == "graceful-1"
    assert any(line.startswith("id: ") for line in lines_seen)
    assert b"without completing response" not in stderr, stderr.decode()[-3000:]
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert process.returncode in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "graceful-1" for line in lines)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cogumi.db'}")
    try:
        async with make_sessionmaker(engine)() as session:
            stored = await session.get(Run, uuid.UUID(run_id))
    finally:
        await engine.dispose()
    assert stored is not None
    assert stored.status.value == "queued" and stored.lease_owner is None
    assert stored.attempts == 0  # handing back does not use up an attempt


async def _stream_lines(client: httpx.AsyncClient, run_id: str, first: asyncio.Event) -> list[str]:
    """The run's live stream, line by line, until the server ends it (an error if
    the response is cut off)."""
    lines: list[str] = []
    async with client.stream("GET", f"/api/runs/{run_id}/stream", timeout=60) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith("id: "):
                first.set()
    return lines


async def _admin(database_url: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cogumi", "admin", "quotas", "set", *args,
        env=_env(tmp_path, COGUMI_DATABASE_URL=database_url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_admin_quotas_set_from_the_shell(
    accounts: Accounts, database_url: str, tmp_path: Path
) -> None:
    owner = await accounts.signup()
    org = str(owner.org_id)
    code, out, err = await _admin(database_url, tmp_path, "--org", org, "--runs-per-month", "7",
                                  "--projects", "3")  # fmt: skip
    assert code == 0, err
    assert "runs_per_month: 0 of 7 (override)" in out and "projects: 0 of 3 (override)" in out
    usage: dict[str, Any] = {
        q["quota"]: q for q in (await owner.client.get("/api/quotas")).json()["items"]
    }
    assert usage["runs_per_month"]["limit"] == 7 and usage["projects"]["limit"] == 3
    code, out, _ = await _admin(database_url, tmp_path, "--org", org, "--reset", "projects")
    assert code == 0 and "projects: 0 of 5\n" in out  # the process's own default
    async with accounts.sessionmaker() as session:
        actors = (await session.scalars(select(AuditLog.actor_label).where(
            AuditLog.org_id == owner.org_id, AuditLog.action == "quotas.updated"))).all()  # fmt: skip
    assert actors == ["cli:admin", "cli:admin"]
    assert (await _admin(database_url, tmp_path, "--org", str(uuid.uuid4()), "--projects", "2"))[
        0
    ] == 1
    assert (await _admin(database_url, tmp_path, "--org", "nope", "--projects", "2"))[0] == 2
    assert (await _admin(database_url, tmp_path, "--org", org, "--reset", "bogus"))[0] == 2
    assert (await _admin(database_url, tmp_path, "--org", org))[0] == 2
