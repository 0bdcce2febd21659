"""Leases: a dead worker's run is retried, then failed with a reason; lost jobs are re-sent;
the duration cap ends a run that runs too long."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.db.base import utcnow
from cogumi.db.engine import make_engine, make_sessionmaker
from cogumi.events.models import StreamMessage
from cogumi.runs import lease
from cogumi.runs.models import Run, RunStatus, ScriptResult
from cogumi.runs.worker import RunWorker
from tests.factories import Accounts
from tests.runs.fake_executor import FakeExecutor
from tests.runs.helpers import FINAL, ago, insert_run, wait_status


def _dead_lease(attempts: int) -> dict[str, object]:
    """A run a worker claimed, then died holding (its lease lapsed a while ago)."""
    return {
        "status": RunStatus.running,
        "lease_owner": "dead-worker:1:0000",
        "lease_expires_at": ago(30),
        "started_at": ago(120),
        "attempts": attempts,
    }


async def _row(sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> Run:
    async with sessionmaker() as session:
        run = await session.get(Run, run_id)
    assert run is not None
    return run


async def test_a_lapsed_lease_is_retried_and_the_run_completes(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, **_dead_lease(attempts=1))
    # What the dead attempt left behind is cleared when the run is retried.
    async with sessionmaker() as session, session.begin():
        session.add(
            ScriptResult(
                org_id=owner.org_id,
                run_id=run.id,
                script_id="S1",
                technique_id="T-old",
                result="fail",
                severity="high",
            )
        )
    reaped = await worker.reap_once()
    assert run.id in [r.id for r in reaped.requeued]
    final = await wait_status(owner.client, str(run.id), FINAL)
    assert final["status"] == "completed", final
    assert final["attempts"] == 2
    assert fake.calls.count(run.id) == 1
    results = (await owner.client.get(f"/api/runs/{run.id}/results")).json()["items"]
    assert [r["technique_id"] for r in results] == ["T-fake"] * 3
    row = await _row(sessionmaker, run.id)
    assert row.lease_owner is None and row.lease_expires_at is None


async def test_a_run_that_keeps_losing_its_worker_fails_with_a_reason(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    owner = await accounts.signup()
    attempts = worker.settings.run_max_attempts
    run = await insert_run(sessionmaker, owner.org_id, **_dead_lease(attempts=attempts))
    reaped = await worker.reap_once()
    assert run.id in [r.id for r in reaped.failed]
    final = (await owner.client.get(f"/api/runs/{run.id}")).json()
    assert final["status"] == "failed"
    assert final["failure_reason"] == f"worker lost; retried {attempts - 1} times"
    assert final["ended_at"] is not None
    assert run.id not in fake.calls
    # A second reaper pass (another process) finds nothing more to do.
    again = await worker.reap_once()
    assert run.id not in [r.id for r in again.failed + again.requeued]


async def test_a_live_lease_is_left_alone_and_cannot_be_claimed(
    accounts: Accounts, worker: RunWorker, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    live = {
        "status": RunStatus.running,
        "lease_owner": "busy-worker:2:0000",
        "lease_expires_at": utcnow() + timedelta(minutes=5),
        "attempts": 1,
    }
    run = await insert_run(sessionmaker, owner.org_id, **live)
    reaped = await worker.reap_once()
    assert run.id not in [r.id for r in reaped.requeued + reaped.failed]
    async with sessionmaker() as session, session.begin():
        claimed = await lease.claim(
            session, run_id=run.id, owner="thief", lease_sec=60, max_attempts=3
        )
    assert claimed is None
    row = await _row(sessionmaker, run.id)
    assert (row.status, row.lease_owner) == (RunStatus.running, "busy-worker:2:0000")
    async with sessionmaker() as session, session.begin():
        await session.delete(await session.get(Run, run.id))


async def test_only_one_of_two_claims_wins(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, enqueued_at=utcnow() + timedelta(hours=1))
    wins = []
    for name in ("worker-a", "worker-b"):
        async with sessionmaker() as session, session.begin():
            claimed = await lease.claim(
                session, run_id=run.id, owner=name, lease_sec=60, max_attempts=3
            )
            wins.append(claimed is not None)
    assert wins == [True, False]
    row = await _row(sessionmaker, run.id)
    assert (row.lease_owner, row.attempts) == ("worker-a", 1)
    async with sessionmaker() as session, session.begin():
        await session.delete(await session.get(Run, run.id))


async def test_a_queued_run_whose_job_was_lost_is_sent_again(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, enqueued_at=ago(3600))
    reaped = await worker.reap_once()
    assert run.id in reaped.resent
    final = await wait_status(owner.client, str(run.id), FINAL)
    assert final["status"] == "completed" and final["attempts"] == 1


async def test_the_duration_cap_stops_the_run_at_the_next_step(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    fake.steps, fake.step_sec = 400, 0.05
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, duration_cap_sec=1)
    await worker.handle(str(run.id))
    final = (await owner.client.get(f"/api/runs/{run.id}")).json()
    assert final["status"] == "failed"
    assert final["failure_reason"] == "duration cap reached"
    assert 5 <= fake.stopped_after[run.id] < 40


async def test_an_executor_ignoring_should_stop_is_cut_off_after_a_grace(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    fake.steps, fake.step_sec, fake.ignore_stop = 400, 0.05, True
    worker.cap_grace_sec = 0.5
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, duration_cap_sec=1)
    await worker.handle(str(run.id))
    final = (await owner.client.get(f"/api/runs/{run.id}")).json()
    assert (final["status"], final["failure_reason"]) == ("failed", "duration cap reached")
    async with sessionmaker() as session:
        count = len(
            (await session.scalars(select(ScriptResult).where(ScriptResult.run_id == run.id))).all()
        )
    assert count == 1  # one step, then it hung until cut off


async def test_a_worker_shutting_down_hands_its_run_back(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from cogumi.runs.worker import RunWorker as Worker

    fake.steps, fake.step_sec = 400, 0.05
    owner = await accounts.signup()
    other = Worker(
        sessionmaker=sessionmaker,
        settings=worker.settings,
        bus=worker.bus,
        queue=worker.queue,
        executor=fake,
        owner="leaving-worker",
    )
    run = await insert_run(sessionmaker, owner.org_id, enqueued_at=utcnow() + timedelta(hours=1))
    from cogumi.tasks import spawn

    job = spawn(other.handle(str(run.id)))
    await wait_status(owner.client, str(run.id), {"running"})
    await other.shutdown()
    job.cancel()
    row = await _row(sessionmaker, run.id)
    assert (row.status, row.lease_owner, row.attempts) == (RunStatus.queued, None, 0)
    async with sessionmaker() as session:
        messages = (
            await session.scalars(
                select(StreamMessage)
                .where(StreamMessage.run_id == run.id, StreamMessage.kind == "run.status")
                .order_by(StreamMessage.seq)
            )
        ).all()
    assert [m.data["status"] for m in messages] == ["running", "queued"]
    # The reaper sends it again at once (enqueued_at cleared) and it completes here.
    fake.steps = 3
    assert run.id in (await worker.reap_once()).resent
    final = await wait_status(owner.client, str(run.id), FINAL)
    assert final["status"] == "completed" and final["attempts"] == 1


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=300")
    cursor.close()


async def test_a_hand_back_that_cannot_get_the_run_gives_up_and_leaves_it_to_the_reaper(
    accounts: Accounts,
    fake: FakeExecutor,
    worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database that keeps the run out of reach (SQLite: another connection holds the
    write lock; PostgreSQL: another transaction holds the run's row) must not hold the
    shutdown, nor fail it: the worker stops, says which run it could not return, and
    the reaper re-queues that run once its lease lapses."""
    from cogumi.runs.worker import RunWorker as Worker
    from cogumi.tasks import spawn

    fake.steps, fake.step_sec = 2, 3600.0  # one step, then idle until stopped
    owner = await accounts.signup()
    engine = None
    ours = sessionmaker
    if database_url.startswith("sqlite"):
        # SQLite waits out its busy timeout inside the driver, where a cancellation
        # cannot reach; this worker's connections wait 0.3 s instead of 10.
        engine = make_engine(database_url)
        event.listen(engine.sync_engine, "connect", _short_busy_timeout)
        ours = make_sessionmaker(engine)
    other = Worker(sessionmaker=ours, settings=worker.settings, bus=worker.bus,
                   queue=worker.queue, executor=fake, owner="stuck-worker")  # fmt: skip
    other.hand_back_sec = 0.5
    run = await insert_run(sessionmaker, owner.org_id, enqueued_at=utcnow() + timedelta(hours=1))
    job = spawn(other.handle(str(run.id)))
    await wait_status(owner.client, str(run.id), {"running"})
    held, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        if database_url.startswith("sqlite"):
            other_db = sqlite3.connect(database_url.split(":///", 1)[1], isolation_level=None)
            try:
                other_db.execute("BEGIN IMMEDIATE")
                held.set()
                await release.wait()
                other_db.execute("ROLLBACK")
            finally:
                other_db.close()
            return
        async with sessionmaker() as session, session.begin():
            await session.execute(select(Run.id).where(Run.id == run.id).with_for_update())
            held.set()
            await release.wait()

    holder = spawn(hold())
    await held.wait()
    try:
        with caplog.at_level(logging.WARNING, logger="cogumi.runs.worker"):
            started = time.monotonic()
            await asyncio.wait_for(other.shutdown(), 10)  # neither raises nor waits on the lock
            waited = time.monotonic() - started
    finally:
        release.set()
        await holder
        if engine is not None:
            await engine.dispose()
    job.cancel()
    assert waited < 5
    assert f"could not hand run(s) {run.id} back" in caplog.text
    row = await _row(sessionmaker, run.id)
    assert (row.status, row.lease_owner) == (RunStatus.running, "stuck-worker")
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Run).where(Run.id == run.id).values(lease_expires_at=ago(5)))
    fake.steps, fake.step_sec = 3, 0.02
    assert run.id in [r.id for r in (await worker.reap_once()).requeued]
    final = await wait_status(owner.client, str(run.id), FINAL)
    assert final["status"] == "completed" and final["attempts"] == 2
