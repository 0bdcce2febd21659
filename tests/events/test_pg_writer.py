"""PostgreSQL group writes in a writer process (cogumi.events.pg_writer): a run's
concurrent batches are written together there, each with the answer it would get
alone; a group that cannot be written together goes alone in serve; a writer that
dies costs a 503 and a retry, never a lost, doubled or half-written batch; it
connects without its password on its command line, and stops with the app."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, make_url, select, update

from cogumi.app import create_app
from cogumi.errors import Forbidden
from cogumi.events import ingest_fast, pg_writer, sqlite_writer
from cogumi.events.models import Event, IngestBatch
from cogumi.events.schemas import IngestResult
from cogumi.projects.models import SidecarToken, TokenStatus
from cogumi.quotas.models import OrgQuota
from cogumi.runs.models import Run
from tests.conftest import _run_outside_loop, make_settings
from tests.databases import create_pg_database, drop_pg_database
from tests.events.test_ingest import batch, http_event, running_run
from tests.events.test_ingest_paths import _read_and_prepare
from tests.factories import Accounts, SidecarFixture, project_with_token

PASSWORD = "not-a-real-password-5b1e"
"""Trust auth ignores it; the writer must get it without showing it."""


@dataclass
class Setup:
    accounts: Accounts
    url: str

    @property
    def path(self) -> ingest_fast.PostgresFastPath:
        path = ingest_fast.fast_path(self.accounts.app.state.engine)
        assert isinstance(path, ingest_fast.PostgresFastPath)
        return path

    @property
    def writer(self) -> sqlite_writer.WriterClient:
        return self.path.writer


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        _run_outside_loop(_upgrade, url)
        yield make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
    finally:
        drop_pg_database(url)


def _upgrade(url: str) -> None:
    from cogumi.db.migrate import upgrade

    upgrade(url)


@pytest.fixture
async def setup(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Setup]:
    """An app on a PostgreSQL database of its own (these tests kill and hold its
    writer, and start the next one at once)."""
    monkeypatch.setattr(sqlite_writer, "RESTART_AFTER_SEC", 0.0)
    app = create_app(make_settings(pg_url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        accounts = Accounts(app=app, sessionmaker=app.state.sessionmaker)
        try:
            yield Setup(accounts, pg_url)
        finally:
            await accounts.close()


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kind of every answer serve gets from the writer (``ok`` or ``alone``)."""
    kinds: list[str] = []
    call = sqlite_writer.WriterClient.call

    async def noted(self: sqlite_writer.WriterClient, request: dict[str, Any]) -> list[Any]:
        answer = await call(self, request)
        kinds.append(answer[0])
        return answer

    monkeypatch.setattr(sqlite_writer.WriterClient, "call", noted)
    return kinds


async def _post(sidecar: SidecarFixture, body: dict[str, Any]) -> Any:
    return await sidecar.client.post("/api/ingest/events", json=body)


async def _count(accounts: Accounts, model: Any, project_id: uuid.UUID) -> int:
    async with accounts.sessionmaker() as session:
        query = select(func.count()).select_from(model).where(model.project_id == project_id)
        return int(await session.scalar(query) or 0)


async def _seqs(accounts: Accounts, run_id: uuid.UUID) -> list[int]:
    async with accounts.sessionmaker() as session:
        seqs = (await session.scalars(select(Event.seq).where(Event.run_id == run_id))).all()
    return sorted(int(s) for s in seqs if s is not None)


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def _written_together(
    setup: Setup, sidecar: SidecarFixture, bodies: list[dict[str, Any]]
) -> list[IngestResult | BaseException | None]:
    """``bodies`` read and prepared first, then written at once (they group)."""
    accounts = setup.accounts
    async with setup.path.connect() as db:
        read = [await _read_and_prepare(accounts, db, sidecar, _encoded(b)) for b in bodies]
        results = await asyncio.gather(*(db.write(*item) for item in read), return_exceptions=True)
    return list(results)


async def test_a_runs_concurrent_batches_are_written_together_by_the_writer(
    setup: Setup, answers: list[str]
) -> None:
    """Eleven batches at once into one run, two of them the same batch_id (one a
    retry of a batch stored before): each gets its own answer, the writer wrote them
    in groups (never alone in serve), seq is gap-free, every counter is right."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    earlier = batch(sidecar, [http_event(0)])
    assert (await _post(sidecar, earlier)).status_code == 200
    bodies = [batch(sidecar, [http_event(n), http_event(n + 100)]) for n in range(1, 10)]
    bodies.insert(4, dict(bodies[2]))  # the same batch twice in flight
    bodies.append(dict(earlier))  # and a retry of one already stored
    results = await _written_together(setup, sidecar, bodies)
    assert all(isinstance(r, IngestResult) for r in results), results
    got = [(r.accepted, r.duplicate) for r in results if isinstance(r, IngestResult)]
    assert got == [(2, False)] * 4 + [(2, True)] + [(2, False)] * 5 + [(1, True)]
    assert answers and set(answers) == {"ok"}  # every group written by the writer
    assert len(answers) < len(bodies)  # and batches went together
    assert await _seqs(accounts, run_id) == list(range(1, 20))  # 1 + 9 x 2
    assert await _count(accounts, IngestBatch, sidecar.project_id) == 10
    async with accounts.sessionmaker() as session:
        run = await session.get(Run, run_id)
        assert run is not None and run.last_seq == 19
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_accepted == 19
        quota = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == owner.org_id))
        assert quota is not None and quota.stored_events == 19
    process = setup.writer._process
    assert process is not None and process.poll() is None


async def test_a_group_the_writer_cannot_write_goes_alone_and_each_gets_its_answer(
    setup: Setup, answers: list[str]
) -> None:
    """A token revoked after its batches were read: the writer's group leaves nothing,
    serve writes each batch alone, and only that token's batches are refused."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    bodies = [batch(sidecar, [http_event(n)]) for n in range(1, 6)]
    async with setup.path.connect() as db:
        read = [await _read_and_prepare(accounts, db, sidecar, _encoded(b)) for b in bodies]
        async with accounts.sessionmaker() as session, session.begin():
            await session.execute(
                update(SidecarToken)
                .where(SidecarToken.id == sidecar.token_id)
                .values(status=TokenStatus.revoked)
            )
        results = await asyncio.gather(*(db.write(*item) for item in read), return_exceptions=True)
    assert all(isinstance(r, Forbidden) for r in results), results
    assert "alone" in answers
    assert await _seqs(accounts, run_id) == [1]
    assert await _count(accounts, IngestBatch, sidecar.project_id) == 1


async def test_a_writer_killed_mid_group_costs_a_503_and_the_retry_stores_it_once(
    setup: Setup,
) -> None:
    """The run's row is held by another transaction, so the writer's group waits in
    its seq reservation (its claim made, nothing committed) when it is killed."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None and process.poll() is None
    holder = await asyncpg.connect(setup.url.replace("postgresql+asyncpg://", "postgresql://"))
    body = batch(sidecar, [http_event(1), http_event(2)])
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", run_id)
        post = asyncio.ensure_future(_post(sidecar, body))
        await _until_waiting(holder)
        assert not post.done()
        os.kill(process.pid, signal.SIGKILL)
        answered, _ = await asyncio.wait({post}, timeout=10)
        await lock.rollback()  # before any assertion: a request left waiting can end
    finally:
        await holder.close()
    assert answered, "no answer while the run's row stayed locked"
    response = post.result()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert response.json()["error"] == "unavailable"
    assert await _count(accounts, IngestBatch, sidecar.project_id) == 1  # its claim rolled back
    retried = await _post(sidecar, body)  # a new writer takes it
    assert retried.status_code == 200, retried.text
    assert retried.json()["accepted"] == 2 and not retried.json()["duplicate"]
    assert (await _post(sidecar, body)).json()["duplicate"] is True
    assert setup.writer._process is not None and setup.writer._process.pid != process.pid
    assert await _seqs(accounts, run_id) == [1, 2, 3]


async def _until_waiting(holder: Any) -> None:
    """Until a backend waits for a lock (the writer's reservation behind ours)."""
    for _ in range(200):
        waiting = await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the writer never waited for the run's row")


async def test_a_writer_that_died_idle_is_replaced_on_the_next_group(setup: Setup) -> None:
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None
    process.kill()
    process.wait()
    await asyncio.sleep(0.05)  # the loop sees the socket close
    response = await _post(sidecar, batch(sidecar, [http_event(1)]))
    assert response.status_code == 200, response.text
    assert await _seqs(accounts, run_id) == [1, 2]


async def test_the_writer_has_no_password_in_its_arguments(setup: Setup) -> None:
    """Any user of the machine can read a process's command line; the connection
    settings travel over the socket."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    await running_run(accounts, sidecar)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None and process.poll() is None
    command = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    assert b"pg_writer" in command
    assert PASSWORD.encode() not in command
    assert PASSWORD.encode() not in Path(f"/proc/{process.pid}/environ").read_bytes()


async def test_the_writer_outlives_signals_meant_for_its_service(setup: Setup) -> None:
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        os.kill(process.pid, signum)
    await asyncio.sleep(0.2)
    assert process.poll() is None
    assert (await _post(sidecar, batch(sidecar, [http_event(1)]))).status_code == 200
    assert setup.writer._process is process
    assert await _seqs(accounts, run_id) == [1, 2]


async def test_the_writer_stops_with_the_app(pg_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(pg_url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        accounts = Accounts(app=app, sessionmaker=app.state.sessionmaker)
        owner = await accounts.signup()
        sidecar = await project_with_token(accounts, owner.org_id)
        await running_run(accounts, sidecar)
        assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
        path = ingest_fast.fast_path(app.state.engine)
        assert isinstance(path, ingest_fast.PostgresFastPath)
        process = path.writer._process
        assert process is not None and process.poll() is None
        await accounts.close()
    assert process.poll() == 0  # it exited on its own when its socket closed


def test_the_writer_keeps_no_more_connections_than_the_engine() -> None:
    """An operator who lowers COGUMI_DATABASE_POOL_SIZE lowers the writer's pool too."""
    from sqlalchemy.ext.asyncio import create_async_engine

    url = "postgresql+asyncpg://cogumi:secret@127.0.0.1:5432/cogumi"  # never connected
    sizes = {}
    for kept in (1, 2, 5, 20):
        path = ingest_fast.PostgresFastPath(create_async_engine(url, pool_size=kept))
        sizes[kept] = path.writer._config["pool_size"]
    assert sizes == {1: 1, 2: 2, 5: 5, 20: pg_writer.POOL_SIZE}
    assert path.writer._config["connect"]["password"] == "secret"


def test_the_writers_settings_are_asyncpgs_own() -> None:
    """What the dialect reads from a URL and asyncpg.connect does not take stays out."""
    import inspect

    taken = set(inspect.signature(asyncpg.connect).parameters)
    assert taken >= ingest_fast._ASYNCPG_CONNECT
    assert pg_writer.POOL_SIZE >= 1


async def test_a_writer_that_cannot_connect_gives_its_group_back_after_its_timeout() -> None:
    """A database that accepts and never answers costs a group the writer's connect
    timeout (asyncpg would wait a minute); the group then goes alone in serve."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = {"connect": {"host": "127.0.0.1", "port": port, "user": "cogumi",
                          "database": "cogumi"},
              "pool_size": 1, "connect_timeout": 0.5}  # fmt: skip
    writer = sqlite_writer.WriterClient([], config, module=pg_writer.__name__)
    try:
        started = asyncio.get_running_loop().time()
        kind, reason = await asyncio.wait_for(writer.call({"batches": []}), 20)
        waited = asyncio.get_running_loop().time() - started
        assert (kind, reason.split(":")[0]) == ("alone", "TimeoutError")
        assert held, "the writer never reached the database"
        assert waited < 5
    finally:
        writer.close()
        for stream in held:
            stream.close()
        server.close()
        await server.wait_closed()


def test_the_writer_gives_up_connecting_long_before_asyncpg_would() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    url = "postgresql+asyncpg://cogumi:secret@127.0.0.1:5432/cogumi"  # never connected
    path = ingest_fast.PostgresFastPath(create_async_engine(url))
    assert path.writer._config["connect_timeout"] == pg_writer.CONNECT_TIMEOUT_SEC <= 15
