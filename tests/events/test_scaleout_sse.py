"""Scale-out proof: two real ``cogumi serve`` processes sharing one database and
one Redis. A stream on process A hears what a third process (this test, with
its own Redis bus and transaction) published; after A dies, the client resumes
on B with ``Last-Event-ID`` and gets every message exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cogumi.db.engine import transaction
from cogumi.events import stream
from cogumi.events.bus import RedisBus
from cogumi.tenancy.models import Role
from tests.events.conftest import REDIS_URL
from tests.events.test_stream import make_run, sse_items
from tests.factories import Accounts
from tests.servers import free_port

pytestmark = pytest.mark.e2e

COGUMI = str(Path(sys.executable).parent / "cogumi")


@asynccontextmanager
async def cogumi_serve(env: dict[str, str], data_dir: Path) -> AsyncIterator[tuple[str, Any]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        COGUMI, "serve", "--port", str(port),
        env={**env, "COGUMI_DATA_DIR": str(data_dir)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(60), httpx.AsyncClient(trust_env=False) as probe:
            while True:
                assert proc.returncode is None, "cogumi serve exited early"
                try:
                    if (await probe.get(f"{base}/api/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


async def test_stream_survives_losing_a_process(
    accounts: Accounts, database_url: str, tmp_path: Path
) -> None:
    owner = await accounts.signup()
    reader = await accounts.api_key(owner.org_id, Role.VIEWER)
    run_id = await make_run(accounts, owner.org_id)
    prefix = f"test-{uuid.uuid4().hex}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env |= {"COGUMI_DATABASE_URL": database_url, "COGUMI_REDIS_URL": REDIS_URL,
            "COGUMI_REDIS_KEY_PREFIX": prefix, "COGUMI_SECRET_KEY": "scale-out-test-secret"}  # fmt: skip
    bus = RedisBus(REDIS_URL, prefix=prefix)
    await bus.start()

    async def publish(n: int) -> None:
        async with transaction(accounts.sessionmaker) as session:
            await stream.publish(session, bus=bus, org_id=owner.org_id, run_id=run_id,
                                 kind="story.step.created", data={"n": n})  # fmt: skip

    headers = dict(reader.client.headers)
    received: list[dict[str, str]] = []
    try:
        async with (
            cogumi_serve(env, tmp_path / "a") as (a, proc_a),
            cogumi_serve(env, tmp_path / "b") as (b, _),
            httpx.AsyncClient(headers=headers, trust_env=False, timeout=30) as http,
        ):
            await publish(1)
            async with http.stream("GET", f"{a}/api/runs/{run_id}/stream") as response:
                assert response.status_code == 200
                items = sse_items(response)
                received.append(await anext(items))  # from A's first read of the table
                await publish(2)
                async with asyncio.timeout(3):  # far below A's 15 s re-read timer: Redis woke A
                    received.append(await anext(items))
                proc_a.kill()  # A dies without a goodbye
                await proc_a.wait()
            for n in (3, 4):
                await publish(n)  # nobody is listening
            resume = {"Last-Event-ID": received[-1]["id"]}
            async with http.stream(
                "GET", f"{b}/api/runs/{run_id}/stream", headers=resume
            ) as response:
                assert response.status_code == 200
                items = sse_items(response)
                async with asyncio.timeout(5):
                    received += [await anext(items), await anext(items)]
                    await publish(5)  # live on B, published by the third process
                    received.append(await anext(items))
    finally:
        await bus.close()
    assert [item["id"] for item in received] == ["1", "2", "3", "4", "5"]
    assert [item["data"] for item in received] == [f'{{"n": {n}}}' for n in range(1, 6)]
    assert {item["event"] for item in received} == {"story.step.created"}
