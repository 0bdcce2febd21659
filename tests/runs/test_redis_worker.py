"""Scale-out: runs go through Redis to real ``cogumi worker`` processes.

A worker killed with SIGKILL mid-run leaves a lapsed lease; another worker's
reaper re-queues the run and finishes it. A cancel sent to the API reaches a
run executing in another process. A worker stopped with SIGTERM exits cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.app import create_app
from cogumi.db.engine import transaction
from cogumi.db.migrate import upgrade
from cogumi.runs.models import Run
from tests.conftest import _run_outside_loop, make_settings
from tests.databases import create_pg_database, drop_pg_database
from tests.factories import Account, Accounts
from tests.runs.helpers import FINAL, make_project, start, wait_status

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("COGUMI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEASE_SEC = 2


@dataclass
class ScaleOut:
    app: FastAPI
    owner: Account
    env: dict[str, str]

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        maker: async_sessionmaker[AsyncSession] = self.app.state.sessionmaker
        return maker


@pytest.fixture
def own_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own, so the suite's embedded app never reaps or runs these runs."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'scale-out.db'}"
        _run_outside_loop(upgrade, url)
        yield url
        return
    url = create_pg_database()
    try:
        _run_outside_loop(upgrade, url)
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
async def scale_out(own_database: str, tmp_path: Path) -> AsyncIterator[ScaleOut]:
    """An API process that only sends jobs to Redis (no in-process worker)."""
    database_url = own_database
    prefix = f"cogumi-test-{uuid.uuid4().hex[:8]}:"
    overrides = {
        "redis_url": REDIS_URL,
        "redis_key_prefix": prefix,
        "run_lease_sec": LEASE_SEC,
        "run_reaper_interval_sec": 0.5,
    }
    settings = make_settings(database_url, tmp_path, **overrides)
    app = create_app(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env.update(
        {
            "COGUMI_DATABASE_URL": database_url,
            "COGUMI_DATA_DIR": str(tmp_path),
            "COGUMI_SECRET_KEY": "test-secret-key-not-for-production",
            "COGUMI_REDIS_URL": REDIS_URL,
            "COGUMI_REDIS_KEY_PREFIX": prefix,
            "COGUMI_RUN_LEASE_SEC": str(LEASE_SEC),
            "COGUMI_RUN_REAPER_INTERVAL_SEC": "0.5",
            "PYTHONPATH": str(ROOT),
        }
    )
    async with app.router.lifespan_context(app):
        assert not app.state.run_queue.in_process
        accounts = Accounts(app=app, sessionmaker=app.state.sessionmaker)
        try:
            yield ScaleOut(app=app, owner=await accounts.signup(), env=env)
        finally:
            await accounts.close()
    redis = Redis.from_url(REDIS_URL)
    await redis.delete(f"{prefix}runs")
    await redis.aclose()


@contextmanager
def worker_process(
    env: dict[str, str], *, steps: int, step_sec: float
) -> Iterator[subprocess.Popen[str]]:
    pace = {"COGUMI_TEST_FAKE_STEPS": str(steps), "COGUMI_TEST_FAKE_STEP_SEC": str(step_sec)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cogumi",
            "worker",
            "--executor",
            "tests.runs.fake_executor:from_env",
        ],
        cwd=ROOT,
        env={**env, **pace},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


async def _run_row(scale: ScaleOut, run_id: str) -> Run:
    async with scale.sessionmaker() as session:
        run = await session.get(Run, uuid.UUID(run_id))
    assert run is not None
    return run


async def _wait_owned_by(
    scale: ScaleOut, run_id: str, proc: subprocess.Popen[str], timeout: float = 90
) -> Run:
    """Until the run is running under ``pid``'s lease with at least one step done."""
    deadline, pid = time.monotonic() + timeout, proc.pid
    while True:
        assert proc.poll() is None, f"worker exited early: {proc.communicate()[0]}"
        run = await _run_row(scale, run_id)
        results = await scale.owner.client.get(f"/api/runs/{run_id}/results")
        if run.lease_owner and f":{pid}:" in run.lease_owner and results.json()["items"]:
            return run
        assert time.monotonic() < deadline, f"worker {pid} never took run {run_id}: {run.status}"
        await asyncio.sleep(0.1)


async def test_a_killed_worker_s_run_is_finished_by_another(scale_out: ScaleOut) -> None:
    client = scale_out.owner.client
    project = await make_project(client)
    with worker_process(scale_out.env, steps=300, step_sec=0.1) as doomed:
        run_id = (await start(client, project["id"])).json()["id"]
        await _wait_owned_by(scale_out, run_id, doomed)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    partial = len((await client.get(f"/api/runs/{run_id}/results")).json()["items"])
    assert partial >= 1
    assert (await client.get(f"/api/runs/{run_id}")).json()["status"] == "running"
    with worker_process(scale_out.env, steps=3, step_sec=0.02) as rescuer:
        final = await wait_status(client, run_id, FINAL, timeout=60)
        rescuer.send_signal(signal.SIGTERM)
        assert rescuer.wait(timeout=20) == 0
    assert final["status"] == "completed", final
    assert final["attempts"] == 2
    results = (await client.get(f"/api/runs/{run_id}/results")).json()["items"]
    assert [r["script_id"] for r in results] == ["P01", "P02", "P03"]
    run = await _run_row(scale_out, run_id)
    assert run.lease_owner is None


async def test_cancel_reaches_a_run_in_another_process(scale_out: ScaleOut) -> None:
    client = scale_out.owner.client
    project = await make_project(client)
    with worker_process(scale_out.env, steps=300, step_sec=0.1) as worker:
        run_id = (await start(client, project["id"])).json()["id"]
        await _wait_owned_by(scale_out, run_id, worker)
        assert (await client.post(f"/api/runs/{run_id}/cancel")).status_code == 200
        asked = time.monotonic()
        final = await wait_status(client, run_id, FINAL, timeout=10)
        assert time.monotonic() - asked < 3
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    assert final["status"] == "canceled"


async def test_without_workers_the_api_s_reaper_fails_a_lost_run(
    scale_out: ScaleOut,
) -> None:
    """Every attempt used and its worker gone: the API process itself ends the run."""
    client = scale_out.owner.client
    project = await make_project(client)
    max_attempts = scale_out.app.state.settings.run_max_attempts
    with worker_process(scale_out.env, steps=300, step_sec=0.1) as doomed:
        run_id = (await start(client, project["id"])).json()["id"]
        await _wait_owned_by(scale_out, run_id, doomed)
        # BEGIN IMMEDIATE on SQLite: the worker process writes all the time, and a
        # read lock upgraded later would fail at once instead of waiting.
        async with transaction(scale_out.sessionmaker) as session:
            run = await session.get(Run, uuid.UUID(run_id))
            assert run is not None
            run.attempts = max_attempts  # as if this were the last try
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    final = await wait_status(client, run_id, FINAL, timeout=LEASE_SEC + 15)
    assert final["status"] == "failed"
    assert final["failure_reason"] == f"worker lost; retried {max_attempts - 1} times"


def test_the_worker_command_needs_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env["COGUMI_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cogumi", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "COGUMI_REDIS_URL" in done.stdout
