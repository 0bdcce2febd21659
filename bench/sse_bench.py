"""SSE delivery benchmark: from a stream message's commit to its receipt by a
connected client, p50/p99, in the embedded mode (one process, in-memory bus,
SQLite) and the scale-out mode (a real ``cogumi serve`` process, Redis bus,
PostgreSQL; the message is published by another process). Prints JSON.

With ``--ingest-load`` another process keeps 8 ingest senders posting batches
of 200 events into the same run while the latency is measured (the server is
then as busy as it gets: ingest takes what CPU it can).

Usage: python bench/sse_bench.py [--messages N] [--modes embedded,redis]
[--ingest-load]. Needs Redis at COGUMI_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/0) and PostgreSQL at COGUMI_BENCH_PG_ADMIN_URL for the
redis mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import PG_ADMIN, free_port, seed, wait_up

from cogumi.app import create_app, settle_heap
from cogumi.config import Settings
from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.db.migrate import upgrade
from cogumi.events import stream
from cogumi.events.bus import LiveBus, RedisBus
from cogumi.tenancy import security
from cogumi.tenancy.models import ApiKey, Role

REDIS = os.environ.get("COGUMI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
INGEST_BENCH = str(Path(__file__).parent / "ingest_bench.py")
TARGET_P99_MS = 20.0
Publish = Callable[[int], Awaitable[float]]


async def reader_key(url: str, org_id: uuid.UUID) -> str:
    issued = security.issue_prefixed_token("cgk")
    engine = make_engine(url)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            session.add(ApiKey(org_id=org_id, name="bench", prefix=issued.prefix,
                               key_hash=issued.hash, role=Role.VIEWER))  # fmt: skip
    finally:
        await engine.dispose()
    return issued.plaintext


def publisher(sessionmaker: Any, bus: LiveBus, org_id: uuid.UUID, run_id: uuid.UUID) -> Publish:
    async def publish(n: int) -> float:
        async with transaction(sessionmaker) as session:
            await stream.publish(session, bus=bus, org_id=org_id, run_id=run_id,
                                 kind="story.step.created", data={"n": n})  # fmt: skip
        return time.perf_counter()  # committed

    return publish


async def lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield line


@contextlib.asynccontextmanager
async def ingest_load(
    base: str, project_id: uuid.UUID, token: str, enabled: bool
) -> AsyncIterator[dict[str, Any]]:
    """While inside: another process posting ingest batches to ``base`` (if enabled)."""
    report: dict[str, Any] = {}
    if not enabled:
        yield report
        return
    proc = await asyncio.create_subprocess_exec(
        sys.executable, INGEST_BENCH, "--load-against", base, "--token", token,
        "--project", str(project_id), "--seconds", "600",
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )  # fmt: skip
    started = time.perf_counter()
    await asyncio.sleep(2)  # let the load settle
    try:
        yield report
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        report["ingest_load_seconds"] = round(time.perf_counter() - started, 1)


async def measure(
    base: str, key: str, run_id: uuid.UUID, publish: Publish, n: int
) -> dict[str, Any]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30, trust_env=False) as c,
        c.stream("GET", f"/api/runs/{run_id}/stream") as response,
    ):
        assert response.status_code == 200
        received = lines(response)
        await publish(-1)
        await anext(received)  # connected and reading
        for i in range(n):
            committed = await publish(i)
            await anext(received)
            latencies.append((time.perf_counter() - committed) * 1000)
            await asyncio.sleep(0.005)
    latencies.sort()
    return {
        "messages": n,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
        "max_ms": round(latencies[-1], 2),
        "target_p99_ms": TARGET_P99_MS,
    }


LIFTED = {"ingest_rate_limit_per_min": 10**9, "quota_events_per_run": 10**9}


async def embedded(n: int, tmp: Path, load: bool) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{tmp}/sse.db"
    await asyncio.to_thread(upgrade, url)
    org_id, project_id, _, token, run_id = await seed(url)
    key = await reader_key(url, org_id)
    app = create_app(Settings(_env_file=None, database_url=url, data_dir=tmp, secret_key="b" * 32,
                              **LIFTED))  # type: ignore[call-arg,arg-type]  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
        settle_heap()
        publish = publisher(app.state.sessionmaker, app.state.live_bus, org_id, run_id)
        base = f"http://127.0.0.1:{port}"
        async with ingest_load(base, project_id, token, load) as report:
            result = await measure(base, key, run_id, publish, n)
    finally:
        server.should_exit = True
        await task
    return {"mode": "embedded: one process, memory bus, SQLite", **result, **report}


async def scale_out(n: int, tmp: Path, load: bool) -> dict[str, Any]:
    name = f"cogumi_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(REDIS, prefix=prefix)
    engine = make_engine(url)
    proc = None
    try:
        await asyncio.to_thread(upgrade, url)
        org_id, project_id, _, token, run_id = await seed(url)
        key = await reader_key(url, org_id)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
        env |= {"COGUMI_DATABASE_URL": url, "COGUMI_REDIS_URL": REDIS, "COGUMI_REDIS_KEY_PREFIX": prefix,
                "COGUMI_PORT": str(port), "COGUMI_DATA_DIR": str(tmp), "COGUMI_SECRET_KEY": "b" * 32,
                "COGUMI_INGEST_RATE_LIMIT_PER_MIN": str(10**9),
                "COGUMI_QUOTA_EVENTS_PER_RUN": str(10**9)}  # fmt: skip
        cogumi = str(Path(sys.executable).parent / "cogumi")
        proc = await asyncio.create_subprocess_exec(
            cogumi, "serve", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        await wait_up(base, proc)
        await bus.start()
        publish = publisher(make_sessionmaker(engine), bus, org_id, run_id)
        async with ingest_load(base, project_id, token, load) as report:
            result = await measure(base, key, run_id, publish, n)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        await bus.close()
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {
        "mode": "scale-out: serve process, Redis bus, PostgreSQL, publisher in another process",
        **result,
        **report,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--modes", default="embedded,redis")
    parser.add_argument("--ingest-load", action="store_true", help="measure under ingest load")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                               "ingest_load": args.ingest_load}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            run = embedded if mode == "embedded" else scale_out
            results[mode] = await run(args.messages, Path(tmp) / mode, args.ingest_load)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
