"""SQLite ingest writes in a writer process (cogumi.events.sqlite_writer): batches
that arrive together share a transaction and each gets the answer it would get
alone; the writer checkpoints the WAL; a writer that dies costs a 503 and a
retry, never a lost or doubled batch; it stops with the app."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cogumi.app import create_app
from cogumi.errors import Forbidden
from cogumi.events import ingest_fast, sqlite_writer
from cogumi.events.models import Event, IngestBatch
from cogumi.events.schemas import IngestResult
from cogumi.projects.models import SidecarToken, TokenStatus
from cogumi.runs.models import Run
from tests.conftest import _run_outside_loop, make_settings
from tests.events.test_ingest import batch, http_event, running_run
from tests.events.test_ingest_paths import _read_and_prepare
from tests.factories import Accounts, SidecarFixture, project_with_token


@dataclass
class Setup:
    accounts: Accounts
    database: Path

    @property
    def writer(self) -> sqlite_writer.WriterClient:
        path = ingest_fast.fast_path(self.accounts.app.state.engine)
        assert isinstance(path, ingest_fast.SqliteFastPath)
        return path.writer


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    """An app on a SQLite file of its own (these tests kill and hold its writer, and
    start the next one at once)."""
    from cogumi.db.migrate import upgrade

    monkeypatch.setattr(sqlite_writer, "RESTART_AFTER_SEC", 0.0)

    database = tmp_path / "writer.db"
    url = f"sqlite+aiosqlite:///{database}"
    _run_outside_loop(upgrade, url)
    app = create_app(make_settings(url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        accounts = Accounts(app=app, sessionmaker=app.state.sessionmaker)
        try:
            yield Setup(accounts, database)
        finally:
            await accounts.close()


async def _post(sidecar: SidecarFixture, body: dict[str, Any]) -> Any:
    return await sidecar.client.post("/api/ingest/events", json=body)


async def _count(accounts: Accounts, model: Any, project_id: uuid.UUID) -> int:
    async with accounts.sessionmaker() as session:
        query = select(func.count()).select_from(model).where(model.project_id == project_id)
        return int(await session.scalar(query) or 0)


async def test_batches_written_together_each_get_their_own_answer(setup: Setup) -> None:
    """Twelve batches handed to the writer at once, into one run: two of them the same
    batch_id, one from a token revoked after it was read. One write each, gap-free
    seq, the duplicate stored once, the revoked one refused with nothing of it stored."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    other = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    warm = await _post(sidecar, batch(sidecar, [http_event(0)]))
    assert warm.status_code == 200, warm.text
    bodies = [batch(sidecar, [http_event(n), http_event(n + 100)]) for n in range(1, 11)]
    bodies.insert(5, dict(bodies[3]))  # the same batch again, between others
    path = ingest_fast.fast_path(accounts.app.state.engine)
    assert path is not None
    async with path.connect() as db:
        read = [await _read_and_prepare(accounts, db, sidecar, _encoded(b)) for b in bodies]
        revoked = await _read_and_prepare(
            accounts, db, other, _encoded(batch(other, [http_event(7)]))
        )
        async with accounts.sessionmaker() as session, session.begin():
            await session.execute(
                update(SidecarToken)
                .where(SidecarToken.id == other.token_id)
                .values(status=TokenStatus.revoked)
            )
        writes = [db.write(*item) for item in [*read[:8], revoked, *read[8:]]]
        results = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(results[8], Forbidden)
    answers = [r for r in results if not isinstance(r, BaseException)]
    assert len(answers) == 11 and all(isinstance(a, IngestResult) for a in answers)
    assert [a.duplicate for a in answers] == [False] * 5 + [True] + [False] * 5  # type: ignore[union-attr]
    assert all(a.accepted == 2 for a in answers)  # type: ignore[union-attr]
    async with accounts.sessionmaker() as session:
        seqs = (await session.scalars(select(Event.seq).where(Event.run_id == run_id))).all()
        assert sorted(seqs) == list(range(1, 22))  # the warm-up's one, then 10 x 2
        assert (await session.get(Run, run_id)).last_seq == 21  # type: ignore[union-attr]
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_accepted == 21
    assert await _count(accounts, IngestBatch, sidecar.project_id) == 11
    assert await _count(accounts, Event, other.project_id) == 0
    assert await _count(accounts, IngestBatch, other.project_id) == 0


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def test_the_writer_checkpoints_the_wal_every_few_transactions(setup: Setup) -> None:
    accounts, database = setup.accounts, setup.database
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    big = [http_event(n, payload_redacted={"note": "x" * 20_000}) for n in range(20)]
    wal = Path(f"{database}-wal")

    async def checkpointed_within(batches: int) -> bool:
        """Whether the database file grows (the WAL copied back) within ``batches``."""
        for _ in range(batches):
            before = database.stat().st_size
            response = await _post(sidecar, batch(sidecar, big))
            assert response.status_code == 200, response.text
            for _ in range(50):  # the checkpoint runs right after the answer
                if database.stat().st_size > before:
                    return True
                await asyncio.sleep(0.01)
        return False

    assert await checkpointed_within(ingest_fast.CHECKPOINT_EVERY + 1)
    assert wal.exists()
    # And not after every transaction: the next few batches only go to the WAL.
    sizes = []
    for _ in range(ingest_fast.CHECKPOINT_EVERY - 1):
        await _post(sidecar, batch(sidecar, big))
        sizes.append(database.stat().st_size)
    assert len(set(sizes)) < len(sizes)


async def test_a_writer_killed_mid_batch_costs_a_503_and_the_retry_stores_it_once(
    setup: Setup,
) -> None:
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None and process.poll() is None
    holder = sqlite3.connect(setup.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the writer will wait for this lock
    body = batch(sidecar, [http_event(1), http_event(2)])
    try:
        post = asyncio.ensure_future(_post(sidecar, body))
        await asyncio.sleep(0.3)
        assert not post.done()
        os.kill(process.pid, signal.SIGKILL)
        response = await asyncio.wait_for(post, 10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert response.json()["error"] == "unavailable"
    assert await _count(accounts, IngestBatch, sidecar.project_id) == 1  # the warm-up only
    retried = await _post(sidecar, body)  # a new writer takes it
    assert retried.status_code == 200, retried.text
    assert retried.json()["accepted"] == 2 and not retried.json()["duplicate"]
    again = await _post(sidecar, body)
    assert again.json()["duplicate"] is True
    assert setup.writer._process is not None and setup.writer._process.pid != process.pid
    async with accounts.sessionmaker() as session:
        seqs = (await session.scalars(select(Event.seq).where(Event.run_id == run_id))).all()
        assert sorted(seqs) == [1, 2, 3]


async def test_a_writer_that_died_idle_is_replaced_on_the_next_batch(setup: Setup) -> None:
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None
    process.kill()
    process.wait()
    await asyncio.sleep(0.05)  # the loop sees the socket close
    response = await _post(sidecar, batch(sidecar, [http_event(1)]))
    assert response.status_code == 200, response.text
    assert await _count(accounts, Event, sidecar.project_id) == 2


async def test_the_writer_stops_with_the_app(tmp_path: Path) -> None:
    from cogumi.db.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'stop.db'}"
    _run_outside_loop(upgrade, url)
    app = create_app(make_settings(url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        accounts = Accounts(app=app, sessionmaker=app.state.sessionmaker)
        owner = await accounts.signup()
        sidecar = await project_with_token(accounts, owner.org_id)
        assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
        path = ingest_fast.fast_path(app.state.engine)
        assert isinstance(path, ingest_fast.SqliteFastPath)
        process = path.writer._process
        assert process is not None and process.poll() is None
        await accounts.close()
    assert process.poll() == 0  # it exited on its own when its socket closed


async def test_a_request_that_cannot_be_encoded_fails_alone(setup: Setup) -> None:
    """It raises to its caller, leaves no answer pending, and the writer serves on."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    with pytest.raises(TypeError):
        await setup.writer.call({"rows": [[object()]]})
    assert setup.writer._pending == {}
    assert (await _post(sidecar, batch(sidecar, [http_event(1)]))).status_code == 200
    assert await _count(accounts, Event, sidecar.project_id) == 2


def test_frames_come_out_as_they_went_in_whatever_the_reads() -> None:
    messages = [{"rows": [["a", 1, None, 2.5, True]], "n": "é" * n} for n in range(30)]
    data = b"".join(sqlite_writer.frame(m) for m in messages)
    for cut in (1, 3, 7, 64, len(data)):
        buffer, seen = bytearray(), []
        for start in range(0, len(data), cut):
            buffer += data[start : start + cut]
            seen += sqlite_writer.take_frames(buffer)
        assert seen == messages and not buffer


async def test_the_writer_outlives_signals_meant_for_its_service(setup: Setup) -> None:
    """Ctrl-C and a service manager's SIGTERM reach every process of the group: the
    writer keeps serving until serve closes its socket."""
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    assert (await _post(sidecar, batch(sidecar, [http_event(0)]))).status_code == 200
    process = setup.writer._process
    assert process is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        os.kill(process.pid, signum)
    await asyncio.sleep(0.2)
    assert process.poll() is None
    response = await _post(sidecar, batch(sidecar, [http_event(1)]))
    assert response.status_code == 200, response.text
    assert setup.writer._process is process


async def test_a_lock_held_past_the_busy_wait_is_a_503_the_sender_retries(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_fast, "_BUSY_WAIT_SEC", 0.5)  # before the writer starts
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = batch(sidecar, [http_event(1)])
    holder = sqlite3.connect(setup.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = await asyncio.wait_for(_post(sidecar, body), 10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert await _count(accounts, IngestBatch, sidecar.project_id) == 0
    retried = await _post(sidecar, body)
    assert retried.status_code == 200 and retried.json()["accepted"] == 1


async def test_a_writer_that_cannot_start_is_not_spawned_for_every_batch(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = setup.accounts
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    monkeypatch.setattr(sqlite_writer, "RESTART_AFTER_SEC", 0.5)
    spawned: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(args: list[str], **kwargs: Any) -> Any:
        spawned.append(args)
        return real_popen(["/bin/false"], **kwargs)  # a writer that exits at once

    monkeypatch.setattr(sqlite_writer.subprocess, "Popen", popen)
    body = batch(sidecar, [http_event(1)])
    answers = [await _post(sidecar, body) for _ in range(5)]
    assert [a.status_code for a in answers] == [503] * 5
    assert len(spawned) == 1  # the others were answered without a new start
    monkeypatch.setattr(sqlite_writer.subprocess, "Popen", real_popen)
    await asyncio.sleep(0.5)
    response = await _post(sidecar, body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
