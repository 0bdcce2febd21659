"""An API app that only sends run jobs to Redis, and real ``cogumi worker`` processes beside it.

The database is the test's own (SQLite file or a fresh PostgreSQL database),
so no other app of the suite reaps or runs these runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from cogumi.app import create_app
from cogumi.db.migrate import upgrade
from tests.conftest import _run_outside_loop, make_settings
from tests.databases import create_pg_database, drop_pg_database
from tests.factories import Account, Accounts

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("COGUMI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEASE_SEC = 2


@contextmanager
def own_database(backend: str, tmp_path: Path) -> Iterator[str]:
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


@dataclass
class ScaleOut:
    app: FastAPI
    owner: Account
    env: dict[str, str]


@asynccontextmanager
async def scale_out(
    database_url: str, tmp_path: Path, *, worker_env: dict[str, str], **app_settings: Any
) -> AsyncIterator[ScaleOut]:
    """The app (its settings plus ``app_settings``) and the environment for its workers."""
    prefix = f"cogumi-test-{uuid.uuid4().hex[:8]}:"
    common = {"redis_url": REDIS_URL, "redis_key_prefix": prefix, "run_lease_sec": LEASE_SEC,
              "retention_interval_sec": 0}  # fmt: skip
    app = create_app(make_settings(database_url, tmp_path, **common, **app_settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env.update({f"COGUMI_{k.upper()}": str(v) for k, v in common.items()})
    env.update(
        COGUMI_DATABASE_URL=database_url, COGUMI_DATA_DIR=str(tmp_path),
        COGUMI_SECRET_KEY="test-secret-key-not-for-production", COGUMI_LOG_FORMAT="text",
        PYTHONPATH=str(ROOT), **worker_env,
    )  # fmt: skip
    async with app.router.lifespan_context(app):
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
    env: dict[str, str], *args: str, steps: int = 3, step_sec: float = 0.02
) -> Iterator[subprocess.Popen[str]]:
    """``cogumi worker`` with the fake executor (tests/runs/fake_executor.py)."""
    pace = {"COGUMI_TEST_FAKE_STEPS": str(steps), "COGUMI_TEST_FAKE_STEP_SEC": str(step_sec)}
    command = [sys.executable, "-m", "cogumi", "worker",
               "--executor", "tests.runs.fake_executor:from_env", *args]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=ROOT, env={**env, **pace}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
