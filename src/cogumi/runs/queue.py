"""The run queue: one taskiq task, two brokers, the same code path.

- Embedded mode (no ``redis_url``): taskiq's in-process broker; a job runs
  in the ``serve`` process as soon as it is sent.
- Scale-out (``redis_url`` set): taskiq-redis ``ListQueueBroker``; ``serve``
  only sends, any number of ``cogumi worker`` processes receive.

A job carries only the run id. The queue is not the source of truth: the
``runs`` row is. A lost job (a worker killed between pop and claim, Redis
flushed, a restarted ``serve``) is re-sent by the reaper, and a doubled one
is harmless because only one worker can claim the row (see ``lease.py``).
Jobs are sent *after* the transaction that created the run commits, so a
worker never looks for a row it cannot see yet.

The worker's listener (:class:`RunJobBroker`) outlives Redis: it polls with a
short ``BRPOP`` timeout, so an idle queue is never a read timeout, and while
Redis is unreachable it waits with back-off and says so once, then resumes
on its own when Redis answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.api import run_receiver_task
from taskiq.kicker import AsyncKicker
from taskiq_redis import ListQueueBroker

from cogumi.config import Settings
from cogumi.tasks import spawn

log = logging.getLogger(__name__)

TASK_NAME = "cogumi.runs.execute"
WORKER_CONCURRENCY = 8
_PENDING = "cogumi_run_jobs"

JobHandler = Callable[[str], Awaitable[None]]
POLL_SEC = 2
"""Server-side ``BRPOP`` timeout: well below the client's socket timeout (5 s)."""
RECONNECT_MIN_SEC = 0.25
RECONNECT_MAX_SEC = 5.0


class RunJobBroker(ListQueueBroker):
    """taskiq-redis's list broker with a listener that survives Redis going away.

    The stock listener blocks in ``BRPOP`` with no server-side timeout, so an
    idle queue ends in a client read timeout, and it lets Redis errors escape:
    taskiq then restarts its receiver at once, in a tight loop of tracebacks
    while Redis is down, each restart forgetting how many runs are executing.
    Here nothing escapes: an idle poll just polls again, and an unreachable
    Redis is retried with exponential back-off (logged when lost and when back).
    """

    poll_sec: float = POLL_SEC

    async def listen(self) -> AsyncGenerator[bytes, None]:
        delay = RECONNECT_MIN_SEC
        lost_at: float | None = None
        while True:
            error: Exception | None = None
            try:
                async with Redis(connection_pool=self.connection_pool) as conn:
                    popped = await conn.brpop([self.queue_name], timeout=self.poll_sec)
            except (RedisError, OSError) as exc:
                popped, error = None, exc
            _honour_cancellation()
            if error is not None:
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("run queue lost Redis (%s); retrying with back-off", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SEC)
                continue
            if lost_at is not None:
                log.warning(
                    "run queue reconnected to Redis after %.1fs", time.monotonic() - lost_at
                )
                delay, lost_at = RECONNECT_MIN_SEC, None
            if popped is not None:
                data = popped[1]
                yield data.encode() if isinstance(data, str) else data


def _honour_cancellation() -> None:
    """Raise if this task was asked to stop while a blocking Redis call was in flight.

    redis-py can swallow a cancellation that lands in a blocking command (the
    call then just returns or fails); the request is still recorded on the task,
    so a worker shutting down does not keep polling forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RunQueue:
    """Sends run jobs; in a worker (or embedded ``serve``) also executes them."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker

    @classmethod
    def from_settings(cls, settings: Settings) -> RunQueue:
        if settings.redis_url:
            queue_name = f"{settings.redis_key_prefix}runs"
            return cls(RunJobBroker(settings.redis_url, queue_name=queue_name))
        return cls(InMemoryBroker(max_async_tasks=WORKER_CONCURRENCY))

    @property
    def in_process(self) -> bool:
        """True when jobs run in the process that sends them (embedded mode)."""
        return isinstance(self.broker, InMemoryBroker)

    def register(self, handler: JobHandler) -> None:
        """Make this process execute run jobs with ``handler(run_id)``."""

        async def execute_run_job(run_id: str) -> None:
            # A plain function: taskiq renames what it registers, which a bound method forbids.
            await handler(run_id)

        self.broker.register_task(execute_run_job, task_name=TASK_NAME)

    async def enqueue(self, run_id: uuid.UUID) -> None:
        kicker: AsyncKicker[[str], None] = AsyncKicker(TASK_NAME, self.broker, {})
        await kicker.kiq(str(run_id))

    async def enqueue_quietly(self, run_id: uuid.UUID) -> None:
        """Send a job; on a broker error log it (the reaper re-sends stale queued runs)."""
        try:
            await self.enqueue(run_id)
        except Exception as exc:  # any broker failure: the DB row stays queued
            log.warning("could not send run %s to the queue (will retry): %s", run_id, exc)

    async def listen(self) -> None:
        """Receive jobs until cancelled (scale-out worker only)."""
        self.broker.is_worker_process = True
        await run_receiver_task(self.broker, max_async_tasks=WORKER_CONCURRENCY)

    async def startup(self) -> None:
        await self.broker.startup()

    async def shutdown(self) -> None:
        await self.broker.shutdown()


def enqueue_after_commit(session: AsyncSession, *, queue: RunQueue, run_id: uuid.UUID) -> None:
    """Send the run's job once ``session`` commits (nothing is sent on rollback)."""
    pending: set[tuple[RunQueue, uuid.UUID]] = session.sync_session.info.setdefault(_PENDING, set())
    pending.add((queue, run_id))


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    pending: set[tuple[RunQueue, uuid.UUID]] = session.info.pop(_PENDING, set())
    for queue, run_id in pending:
        spawn(queue.enqueue_quietly(run_id), name="run-enqueue")


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
