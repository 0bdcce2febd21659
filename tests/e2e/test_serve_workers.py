"""`cogumi serve --workers N`: several real processes on one port, sharing the
database and Redis; concurrent ingest through both keeps every run's seq gap-free.
Without Redis, more than one worker is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cogumi.events.models import Event
from tests.events.conftest import REDIS_URL
from tests.events.test_ingest import batch, http_event, running_run
from tests.factories import Accounts, project_with_token
from tests.servers import free_port

pytestmark = pytest.mark.e2e


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env.update(COGUMI_DATABASE_URL=database_url, COGUMI_DATA_DIR=str(tmp_path),
               COGUMI_SECRET_KEY="workers-test-key", COGUMI_RETENTION_INTERVAL_SEC="0",
               **extra)  # fmt: skip
    return env


def _workers(pid: int) -> list[int]:
    """Live worker processes of ``pid`` (Linux /proc; multiprocessing's resource
    tracker, also a child, is not a worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and b"resource_tracker" not in command:
                found.append(int(entry.name))
    return found


async def test_two_processes_serve_one_port_and_keep_seq_gap_free(
    accounts: Accounts, database_url: str, tmp_path: Path
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    port = free_port()
    env = _env(database_url, tmp_path, COGUMI_REDIS_URL=REDIS_URL,
               COGUMI_REDIS_KEY_PREFIX=f"test-{uuid.uuid4().hex}:",
               COGUMI_INGEST_RATE_LIMIT_PER_MIN="100000")  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cogumi", "serve", "--port", str(port), "--workers", "2",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as client:
            deadline = time.monotonic() + 60
            while True:  # every worker answers once both are up
                assert proc.returncode is None, "cogumi serve exited early"
                assert time.monotonic() < deadline, "serve --workers 2 did not come up"
                try:
                    if (await client.get("/api/health")).status_code == 200 and len(
                        _workers(proc.pid)
                    ) >= 2:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            workers = _workers(proc.pid)
            sizes = [25] * 12 + [1, 7, 3]
            client.headers["X-Sidecar-Token"] = sidecar.token
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/ingest/events", json=batch(sidecar, [http_event(i) for i in range(n)])
                    )
                    for n in sizes
                )
            )
        assert [r.status_code for r in responses] == [200] * len(sizes), [r.text for r in responses]
        assert len(workers) == 2
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    async with accounts.sessionmaker() as session:
        seqs = (await session.scalars(select(Event.seq).where(Event.run_id == run_id))).all()
    assert sorted(seqs) == list(range(1, sum(sizes) + 1))


async def test_more_than_one_worker_needs_redis(database_url: str, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cogumi", "serve", "--port", str(free_port()), "--workers", "2",
        env=_env(database_url, tmp_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"COGUMI_REDIS_URL" in stderr
