"""Fixtures shared by every test.

Database tests run twice: once on SQLite, once on a throwaway PostgreSQL
database (``backend`` is a session-scoped parameter, so pytest runs all
SQLite tests, then all PostgreSQL tests). One app per backend, driven
through ``httpx.ASGITransport``; each test makes its own users and orgs, so
tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.app import create_app
from cogumi.config import Settings
from cogumi.db.migrate import upgrade
from tests.databases import create_pg_database, drop_pg_database
from tests.factories import Accounts


def _run_outside_loop(fn, *args) -> None:  # type: ignore[no-untyped-def]
    """Alembic's env uses asyncio.run; run it on a thread when a loop is running."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="session", autouse=True)
async def _sqlite_threads_end_before_the_loop() -> AsyncIterator[None]:
    """SQLAlchemy force-closes an aiosqlite connection without waiting for it, and the
    connection's thread then hands its answer to the event loop: the session's loop
    must outlive those threads, or that answer lands on a closed loop (an unhandled
    thread exception that fails the run). Threads of connections left open are not
    waited for past two seconds in all."""
    yield
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)") and loop.time() < deadline:
            await asyncio.to_thread(thread.join, max(0.0, deadline - loop.time()))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "cogumi.db"
        url = f"sqlite+aiosqlite:///{path}"
        _run_outside_loop(upgrade, url)
        yield url
        return
    url = create_pg_database()
    try:
        _run_outside_loop(upgrade, url)
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="session")
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": "test-secret-key-not-for-production",
        "login_rate_limit": 10_000,
        "public_url": "http://testserver",
        # Tests share orgs across many objects; quota tests set their own limits.
        "quota_projects": 10_000,
        "quota_runs_per_month": 100_000,
        "quota_runs_per_day_per_project": 10_000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The session app's reaper passes once at start, then sleeps: lease tests call
    # ``reap_once`` themselves and must not race a background pass for the same run.
    return make_settings(
        database_url, tmp_path_factory.mktemp("data"), run_reaper_interval_sec=3600.0
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client with its own cookie jar."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def accounts(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Accounts]:
    """Factory of signed-in users, orgs and role members (see tests/factories.py)."""
    factory = Accounts(app=app, sessionmaker=sessionmaker)
    try:
        yield factory
    finally:
        await factory.close()
