"""Keeping the storage estimate in step with rows that ingest did not count.

Sidecar events are counted as ingest stores them. The engine's own events
(messages, markers) are counted once, when the run ends; retention subtracts
what it deletes. Each query here is bounded by one run or one deletion set
(indexed columns), never a scan of the whole event table.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.events.models import Event
from cogumi.quotas.service import add_storage
from cogumi.runs.models import Run


def payload_size() -> Any:
    """SQL for an event's stored payload size in characters (portable)."""
    return func.coalesce(func.length(cast(Event.payload_redacted, String)), 0)


async def measure(session: AsyncSession, *conditions: Any) -> tuple[int, int]:
    """(rows, payload bytes) of the events matching ``conditions``."""
    query = select(func.count(), func.coalesce(func.sum(payload_size()), 0)).where(*conditions)
    count, size = (await session.execute(query.select_from(Event))).one()
    return int(count or 0), int(size or 0)


async def account_engine_events(session: AsyncSession, *, run: Run) -> None:
    """Add the run's engine-written events (no sidecar token) to the org's estimate."""
    events, size = await measure(session, Event.run_id == run.id, Event.sidecar_token_id.is_(None))
    await add_storage(session, org_id=run.org_id, events=events, payload_bytes=size)


async def forget(session: AsyncSession, *, org_id: uuid.UUID, events: int, size: int) -> None:
    """Take deleted events off the org's estimate."""
    await add_storage(session, org_id=org_id, events=-events, payload_bytes=-size)
