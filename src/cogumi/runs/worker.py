"""The run worker: claim a run, execute it under a renewed lease, record how it ended.

The campaign itself is the executor's job (``cogumi.engine.runner.execute_run``
in production, injected here so tests and other engines can supply their
own). The worker owns the lifecycle around it:

- ``should_stop()`` (async, called by the executor between steps) reads the
  run row: a cancel request, the duration cap or a lost lease stop the run
  wherever it executes;
- past the cap plus a grace period the executor is cancelled outright;
- the final status is written only if the lease is still ours, so a worker
  that lost its run to the reaper never overwrites the new attempt.

An executor may end the run itself (e.g. ``stopped_quota``) through
:func:`cogumi.runs.service.finish_run`; the worker then keeps that status.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.db.engine import transaction
from cogumi.events.bus import LiveBus
from cogumi.quotas import runcap
from cogumi.quotas.storage import account_engine_events
from cogumi.runs import lease, service
from cogumi.runs.models import TERMINAL_STATUSES, Run, RunStatus
from cogumi.runs.queue import RunQueue
from cogumi.tasks import spawn

log = logging.getLogger(__name__)

CAP_GRACE_SEC = 30.0
HAND_BACK_SEC = 15.0
"""How long a stopping worker tries to hand its runs back. A database that is down, or
a lock held past it, must not hold the shutdown: the reaper re-queues such runs once
their lease expires (at the cost of an attempt)."""
CAP_REASON = "duration cap reached"
ShouldStop = Callable[[], Awaitable[bool]]


class RunFailed(Exception):
    """Raised by an executor when the campaign cannot go on; the message is the failure reason.

    Expected failures (no agent URL, unreachable agent...) read better without the
    exception's class name and are logged without a traceback.
    """


class WorkerObserver(Protocol):
    """Told what the worker did (metrics); methods must be quick and must not raise."""

    def run_ended(self, run: Run) -> None: ...

    def lease_renewed(self, outcome: str) -> None:
        """``renewed``, ``lost`` (another owner took the run) or ``error`` (DB blip)."""
        ...

    def reaped(self, reaped: lease.Reaped) -> None: ...


class Executor(Protocol):
    def __call__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        bus: LiveBus,
        run_id: uuid.UUID,
        should_stop: ShouldStop,
    ) -> Awaitable[None]: ...


def engine_executor() -> Executor:
    """The production campaign runner, imported only when a run starts."""
    runner = importlib.import_module("cogumi.engine.runner")
    executor: Executor = runner.execute_run
    return executor


@dataclass
class Attempt:
    """One execution of one run by this worker."""

    run_id: uuid.UUID
    deadline: float
    lost: bool = False
    capped: bool = False
    events_cap: int | None = None  # the run's events-per-run quota, fixed at creation


class RunWorker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        bus: LiveBus,
        queue: RunQueue,
        executor: Executor | None = None,
        owner: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.bus = bus
        self.queue = queue
        self.executor = executor
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.cap_grace_sec = CAP_GRACE_SEC
        self.hand_back_sec = HAND_BACK_SEC
        self._active: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.observers: list[WorkerObserver] = []

    # --- the job ------------------------------------------------------------

    async def handle(self, run_id: str) -> None:
        """The queue's task: execute one run if this worker can claim it."""
        try:
            parsed = uuid.UUID(run_id)
        except ValueError:
            log.warning("ignoring a run job with a malformed id %r", run_id)
            return
        task = spawn(self.execute(parsed), name=f"run-{parsed}")
        self._active[parsed] = task
        task.add_done_callback(lambda _: self._active.pop(parsed, None))
        # Shielded: stopping the receiver must not cut a run short; shutdown() decides.
        await asyncio.shield(task)

    async def execute(self, run_id: uuid.UUID) -> None:
        run = await self._claim(run_id)
        if run is None:
            return
        attempt = Attempt(run_id=run_id, deadline=time.monotonic() + run.duration_cap_sec)
        attempt.events_cap = ((run.config or {}).get("quota") or {}).get("events_per_run")
        renewer = spawn(self._renew(attempt), name=f"lease-{run_id}")
        try:
            outcome = await self._run_executor(attempt, run.duration_cap_sec)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        if not attempt.lost:
            await self._finish(attempt, outcome)

    async def _claim(self, run_id: uuid.UUID) -> Run | None:
        async with transaction(self.sessionmaker) as session:
            run = await lease.claim(
                session,
                run_id=run_id,
                owner=self.owner,
                lease_sec=self.settings.run_lease_sec,
                max_attempts=self.settings.run_max_attempts,
            )
            if run is None:
                return None
            # Whatever an earlier attempt (dead or handed back) wrote goes; a first one has none.
            await lease.clear_partial_outputs(session, run_id=run_id)
            await service.publish_status(session, bus=self.bus, run=run)
        log.info("run %s claimed by %s (attempt %d)", run_id, self.owner, run.attempts)
        return run

    async def _renew(self, attempt: Attempt) -> None:
        every = self.settings.run_lease_sec / 3
        while True:
            await asyncio.sleep(every)
            try:
                async with transaction(self.sessionmaker) as session:
                    ours = await lease.renew(
                        session,
                        run_id=attempt.run_id,
                        owner=self.owner,
                        lease_sec=self.settings.run_lease_sec,
                    )
            except Exception as exc:  # a DB blip: try again next time, the lease has slack
                log.warning("lease renewal of run %s failed: %s", attempt.run_id, exc)
                self._tell("lease_renewed", "error")
                continue
            self._tell("lease_renewed", "renewed" if ours else "lost")
            if not ours:
                attempt.lost = True
                return

    def should_stop_for(self, attempt: Attempt) -> ShouldStop:
        async def should_stop() -> bool:
            if attempt.lost:
                return True
            async with self.sessionmaker() as session:
                row = (
                    await session.execute(
                        select(
                            Run.status, Run.cancel_requested_at, Run.lease_owner, Run.last_seq
                        ).where(Run.id == attempt.run_id)
                    )
                ).one_or_none()
            if row is not None and row.status == RunStatus.stopped_quota:
                return True  # ingest stopped it at its event cap; _finish keeps that status
            if row is None or row.lease_owner != self.owner or row.status != RunStatus.running:
                attempt.lost = True
                return True
            if row.cancel_requested_at is not None:
                return True
            if time.monotonic() >= attempt.deadline:
                attempt.capped = True
                return True
            return await self._over_event_quota(attempt, row.last_seq)

        return should_stop

    async def _run_executor(self, attempt: Attempt, cap_sec: int) -> BaseException | None:
        """Run the campaign; returns the error it ended with, if any."""
        try:
            executor = self.executor or engine_executor()
            async with asyncio.timeout(cap_sec + self.cap_grace_sec):
                await executor(
                    sessionmaker=self.sessionmaker,
                    settings=self.settings,
                    bus=self.bus,
                    run_id=attempt.run_id,
                    should_stop=self.should_stop_for(attempt),
                )
        except TimeoutError:
            attempt.capped = True
        except RunFailed as exc:
            log.warning("run %s failed: %s", attempt.run_id, exc)
            return exc
        except Exception as exc:
            log.exception("run %s: the campaign raised", attempt.run_id)
            return exc
        return None

    async def _finish(self, attempt: Attempt, error: BaseException | None) -> None:
        async with transaction(self.sessionmaker) as session:
            run = await session.scalar(
                select(Run)
                .where(Run.id == attempt.run_id, Run.lease_owner == self.owner)
                .execution_options(populate_existing=True)
            )
            if run is None:
                return  # reaped meanwhile: the next attempt owns it
            run.lease_owner = None
            run.lease_expires_at = None
            await account_engine_events(session, run=run)
            if run.status not in TERMINAL_STATUSES:  # else the executor or ingest ended it
                status, reason = _outcome(run, attempt, error)
                await service.finish_run(
                    session, bus=self.bus, run=run, status=status, reason=reason
                )
        self._tell("run_ended", run)

    async def _over_event_quota(self, attempt: Attempt, stored: int) -> bool:
        """Warn at 80% of the run's event quota; at 100% stop it as ``stopped_quota``."""
        cap = attempt.events_cap
        if not cap or stored < cap * runcap.WARN_AT:
            return False
        async with transaction(self.sessionmaker) as session:
            run = await session.get(Run, attempt.run_id)
            if run is None:
                return True
            return await runcap.after_events(session, bus=self.bus, run=run, stored=stored, cap=cap)

    def _tell(self, event: str, *args: object) -> None:
        """Call ``event`` (a :class:`WorkerObserver` method) on every observer."""
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:  # an observer never breaks the worker
                log.exception("worker observer %r failed on %s", observer, event)

    # --- lifecycle ----------------------------------------------------------

    async def reap_once(self) -> lease.Reaped:
        """One reaper pass; jobs are re-sent after its transaction commits."""
        async with transaction(self.sessionmaker) as session:
            reaped = await lease.reap(
                session,
                max_attempts=self.settings.run_max_attempts,
                stale_queued_sec=2 * self.settings.run_lease_sec,
            )
            for run in reaped.requeued:
                await service.publish_status(
                    session, bus=self.bus, run=run, status=RunStatus.queued
                )
            for run in reaped.failed:
                reason = lease.lost_reason(run.attempts)
                await service.publish_status(
                    session, bus=self.bus, run=run, status=RunStatus.failed, reason=reason
                )
        for run_id in [r.id for r in reaped.requeued] + reaped.resent:
            await self.queue.enqueue_quietly(run_id)
        self._tell("reaped", reaped)
        if reaped.requeued or reaped.failed:
            log.warning(
                "reaper: %d run(s) re-queued, %d failed after losing their worker",
                len(reaped.requeued),
                len(reaped.failed),
            )
        return reaped

    async def reap_forever(self) -> None:
        me = asyncio.current_task()
        while True:
            try:
                await self.reap_once()
            except Exception as exc:  # keep reaping: a DB outage must not kill the loop
                log.warning("reaper pass failed: %s", exc)
            if me is not None and me.cancelling():
                # Cancelled during the pass, and something on the way swallowed it:
                # stop anyway (else shutdown would wait for the next pass, forever).
                raise asyncio.CancelledError
            await asyncio.sleep(self.settings.run_reaper_interval_sec)

    async def shutdown(self) -> None:
        """Stop executing; hand our runs back to the queue without using up an attempt."""
        active = dict(self._active)
        for task in active.values():
            task.cancel()
        for task in active.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not active:
            return
        try:
            async with asyncio.timeout(self.hand_back_sec):
                await self._hand_back(list(active))
        except Exception as exc:  # a timeout included: the shutdown goes on
            log.warning(
                "could not hand run(s) %s back to the queue (%s); the reaper re-queues "
                "them once their lease expires",
                ", ".join(str(run_id) for run_id in active),
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )

    async def _hand_back(self, run_ids: list[uuid.UUID]) -> None:
        async with transaction(self.sessionmaker) as session:
            returned = await session.scalars(
                update(Run)
                .where(Run.id.in_(run_ids), Run.lease_owner == self.owner)
                .where(Run.status == RunStatus.running)
                .values(
                    status=RunStatus.queued,
                    lease_owner=None,
                    lease_expires_at=None,
                    enqueued_at=None,
                    attempts=Run.attempts - 1,
                )
                .returning(Run)
            )
            for run in list(returned.all()):
                await service.publish_status(session, bus=self.bus, run=run)


def _outcome(
    run: Run, attempt: Attempt, error: BaseException | None
) -> tuple[RunStatus, str | None]:
    if isinstance(error, RunFailed):
        return RunStatus.failed, (str(error).strip() or "the campaign could not run")[:1000]
    if error is not None:
        text = str(error).strip() or "no details"
        return RunStatus.failed, f"campaign error ({type(error).__name__}): {text}"[:1000]
    if run.cancel_requested_at is not None:
        return RunStatus.canceled, None
    if attempt.capped:
        return RunStatus.failed, CAP_REASON
    return RunStatus.completed, None
