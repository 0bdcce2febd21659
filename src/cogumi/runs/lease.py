"""Run leases: who executes a run, and what happens when that worker dies.

Claiming is one conditional ``UPDATE``: it succeeds for exactly one worker,
whichever database, however many duplicate jobs were delivered. The owner
renews the lease while it works; when it stops renewing (killed, frozen,
partitioned), the lease lapses and the reaper, which runs in every worker and
in ``serve``, either puts the run back in the queue (attempts left) or fails
it with a readable reason. No run stays ``running`` without a live owner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.findings.models import Finding
from cogumi.runs.models import Run, RunStatus, ScriptResult, StoryStep


def lost_reason(attempts: int) -> str:
    retried = max(attempts - 1, 0)
    return f"worker lost; retried {retried} time{'s' if retried != 1 else ''}"


async def claim(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    owner: str,
    lease_sec: int,
    max_attempts: int,
    now: datetime | None = None,
) -> Run | None:
    """Take the run if it is queued (or its lease lapsed with attempts left); None otherwise."""
    now = now or utcnow()
    lapsed = and_(
        Run.status == RunStatus.running,
        Run.lease_expires_at < now,
        Run.attempts < max_attempts,
    )
    claimed = await session.scalar(
        update(Run)
        .where(Run.id == run_id, or_(Run.status == RunStatus.queued, lapsed))
        .values(
            status=RunStatus.running,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_sec),
            attempts=Run.attempts + 1,
            started_at=now,
        )
        .returning(Run.id)
    )
    if claimed is None:
        return None
    return await session.scalar(
        select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    )


async def clear_partial_outputs(session: AsyncSession, *, run_id: uuid.UUID) -> None:
    """A retried run starts clean: the lost attempt's results, findings and story go.

    Events stay (they are append-only evidence of what the agent did).
    """
    for model in (StoryStep, Finding, ScriptResult):
        await session.execute(delete(model).where(model.run_id == run_id))


async def renew(session: AsyncSession, *, run_id: uuid.UUID, owner: str, lease_sec: int) -> bool:
    """Extend the lease; False when it is no longer ours (reaped, or the run ended)."""
    renewed = await session.scalar(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.running)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_sec))
        .returning(Run.id)
    )
    return renewed is not None


@dataclass
class Reaped:
    """What one reaper pass did (the caller sends jobs and status messages after commit)."""

    requeued: list[Run] = field(default_factory=list)
    failed: list[Run] = field(default_factory=list)
    resent: list[uuid.UUID] = field(default_factory=list)


async def _expired(session: AsyncSession, now: datetime) -> list[Run]:
    query = select(Run).where(Run.status == RunStatus.running, Run.lease_expires_at < now)
    return list((await session.scalars(query)).all())


async def _take_over(
    session: AsyncSession, run: Run, now: datetime, values: dict[str, object]
) -> bool:
    """Apply ``values`` only if the lease is still lapsed (another reaper may have won)."""
    done = await session.scalar(
        update(Run)
        .where(
            Run.id == run.id,
            Run.status == RunStatus.running,
            Run.lease_owner == run.lease_owner,
            Run.lease_expires_at < now,
        )
        .values(lease_owner=None, lease_expires_at=None, **values)
        .returning(Run.id)
    )
    return done is not None


async def _stale_queued(session: AsyncSession, now: datetime, stale_sec: float) -> list[uuid.UUID]:
    cutoff = now - timedelta(seconds=stale_sec)
    stale = or_(Run.enqueued_at.is_(None), Run.enqueued_at < cutoff)
    ids = list(
        (
            await session.scalars(
                update(Run)
                .where(Run.status == RunStatus.queued, stale)
                .values(enqueued_at=now)
                .returning(Run.id)
            )
        ).all()
    )
    return ids


async def reap(
    session: AsyncSession,
    *,
    max_attempts: int,
    stale_queued_sec: float,
    now: datetime | None = None,
) -> Reaped:
    """Re-queue or fail runs whose lease lapsed; pick out queued runs whose job went missing."""
    now = now or utcnow()
    result = Reaped()
    for run in await _expired(session, now):
        if run.attempts < max_attempts:
            if await _take_over(
                session, run, now, {"status": RunStatus.queued, "enqueued_at": now}
            ):
                result.requeued.append(run)
        else:
            values = {
                "status": RunStatus.failed,
                "failure_reason": lost_reason(run.attempts),
                "ended_at": now,
            }
            if await _take_over(session, run, now, values):
                result.failed.append(run)
    result.resent = await _stale_queued(session, now, stale_queued_sec)
    return result
