"""A run's live stream: durable messages plus bus wake-ups, served as SSE.

Writers call :func:`publish` inside their own transaction; the message gets
the run's next stream ``seq`` and the bus is notified only after the commit
(so a woken reader always finds the row), carrying the message itself. A
stream that is up to date sends carried messages at once; on a gap, a
``run.status`` message or its slow timer it reads the table. Readers resume
from any ``Last-Event-ID`` by reading ``seq > id`` from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from cogumi.events.bus import LiveBus, LiveMessage, Subscription
from cogumi.events.models import StreamMessage
from cogumi.runs.models import Run, RunStatus
from cogumi.tasks import spawn

StreamKind = Literal["run.status", "story.step.created", "finding.created", "quota.warning"]
TERMINAL = frozenset(
    {RunStatus.completed, RunStatus.failed, RunStatus.canceled, RunStatus.stopped_quota}
)
_PENDING = "cogumi_live_notify"
READ_BATCH = 500


async def publish(
    session: AsyncSession,
    *,
    bus: LiveBus,
    org_id: uuid.UUID,
    run_id: uuid.UUID,
    kind: StreamKind,
    data: dict[str, Any],
) -> int:
    """Append a message to the run's stream; subscribers are woken after commit."""
    seq = await session.scalar(
        update(Run)
        .where(Run.id == run_id, Run.org_id == org_id)
        .values(last_stream_seq=Run.last_stream_seq + 1)
        .returning(Run.last_stream_seq)
    )
    if seq is None:
        raise LookupError(f"run {run_id} not found")
    await session.execute(
        insert(StreamMessage).values(
            id=uuid.uuid4(), org_id=org_id, run_id=run_id, seq=seq, kind=kind, data=data
        )
    )
    # Carried as the table will give it back (a JSON round trip), in commit order.
    carried = LiveMessage(int(seq), kind, json.loads(json.dumps(data)))
    pending: dict[tuple[LiveBus, uuid.UUID], list[LiveMessage]]
    pending = session.sync_session.info.setdefault(_PENDING, {})
    pending.setdefault((bus, run_id), []).append(carried)
    return int(seq)


@event.listens_for(Session, "after_commit")
def _notify_after_commit(session: Session) -> None:
    pending: dict[tuple[LiveBus, uuid.UUID], list[LiveMessage]] = session.info.pop(_PENDING, {})
    for (bus, run_id), messages in pending.items():
        spawn(bus.notify(run_id, messages), name="live-notify")


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


async def read_after(
    sessionmaker: async_sessionmaker[AsyncSession], *, run_id: uuid.UUID, after: int
) -> tuple[list[StreamMessage], RunStatus | None]:
    """Messages with ``seq > after`` (one batch) and the run's current status."""
    async with sessionmaker() as session:
        status = await session.scalar(select(Run.status).where(Run.id == run_id))
        rows = await session.scalars(
            select(StreamMessage)
            .where(StreamMessage.run_id == run_id, StreamMessage.seq > after)
            .order_by(StreamMessage.seq)
            .limit(READ_BATCH)
        )
        return list(rows.all()), status


async def sse_messages(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    bus: LiveBus,
    run_id: uuid.UUID,
    after: int,
    poll_sec: float = 15.0,
    stop: anyio.Event | None = None,
) -> AsyncIterator[dict[str, str]]:
    """SSE items for a run from ``after`` on; ends once the run is over and all is sent,
    or when ``stop`` is set (the server is shutting down: the stream ends cleanly and
    the client resumes elsewhere with ``Last-Event-ID``)."""
    async with bus.subscribe(run_id) as subscription, _waking(subscription, stop):
        read = True  # the table first: the backlog, and whether the run is over
        while stop is None or not stop.is_set():
            subscription.clear()  # before reading, so a notify meanwhile is not lost
            if read:
                messages, status = await read_after(sessionmaker, run_id=run_id, after=after)
                for message in messages:
                    after = message.seq
                    yield _item(message.seq, message.kind, message.data)
                if len(messages) == READ_BATCH:
                    continue
                if status is None or status in TERMINAL:
                    return
            carried, read = _carried(subscription, after)
            for live in carried:
                after = live.seq
                yield _item(live.seq, live.kind, live.data)
            if carried or read:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscription.wait(), timeout=poll_sec)
            read = not subscription.messages  # woken without messages, or the slow timer


@contextlib.asynccontextmanager
async def _waking(subscription: Subscription, stop: anyio.Event | None) -> AsyncIterator[None]:
    """While open, ``stop`` being set also wakes ``subscription``'s waiter."""
    if stop is None:
        yield
        return

    async def wake() -> None:
        await stop.wait()
        subscription.set()

    waker = spawn(wake(), name="sse-stop")
    try:
        yield
    finally:
        waker.cancel()


def _carried(subscription: Subscription, after: int) -> tuple[list[LiveMessage], bool]:
    """The carried messages that follow ``after`` without a gap, and whether the
    table must be read (a gap, or a ``run.status`` that may end the run)."""
    out: list[LiveMessage] = []
    while subscription.messages:
        message = subscription.messages.popleft()
        if message.seq <= after:
            continue  # already sent (read from the table)
        if message.seq != after + 1:
            return out, True
        out.append(message)
        after = message.seq
        if message.kind == "run.status":
            return out, True
    return out, False


def _item(seq: int, kind: str, data: dict[str, Any]) -> dict[str, str]:
    return {"id": str(seq), "event": kind, "data": json.dumps(data)}
