"""The events-per-run cap: an 80% ``quota.warning`` once, then a ``stopped_quota`` stop.

Both ingest (sidecar events) and the run worker (the engine's own events)
call :func:`after_events`; the notice table makes the warning happen once
whoever crosses the line first, and the stop is a no-op on a run that has
already ended.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.events import stream
from cogumi.events.bus import LiveBus
from cogumi.quotas import service
from cogumi.quotas.models import QuotaNotice
from cogumi.runs import service as runs_service
from cogumi.runs.models import Run, RunStatus, Severity, StepKind

WARN_AT = 0.8
STOP_REASON = "event quota reached: the run holds {cap} events, the most a run may hold"


async def cap_of(session: AsyncSession, *, run: Run, settings: Settings) -> int:
    """The run's cap, fixed when it was created (older runs: the org's current limit)."""
    fixed = snapshot_cap(run.config)
    if fixed is not None:
        return fixed
    limits = await service.limits_for(session, org_id=run.org_id, settings=settings)
    return limits.events_per_run


def snapshot_cap(config: dict[str, Any] | None) -> int | None:
    """The events-per-run cap in a run's config snapshot, if it has one."""
    snapshot = (config or {}).get("quota") or {}
    value = snapshot.get("events_per_run")
    return value if isinstance(value, int) and value > 0 else None


async def _first_notice(session: AsyncSession, *, run: Run, kind: str) -> bool:
    """True only for the first caller to record this notice for the run."""
    result: Any = await session.execute(
        service._insert_ignore(session, QuotaNotice).values(
            id=uuid.uuid4(), org_id=run.org_id, run_id=run.id, kind=kind
        )
    )
    return bool(result.rowcount)


async def after_events(
    session: AsyncSession, *, bus: LiveBus, run: Run, stored: int, cap: int
) -> bool:
    """React to the run now holding ``stored`` events; True when it was stopped."""
    if stored >= cap * WARN_AT and await _first_notice(session, run=run, kind="events_80"):
        data = {"run_id": str(run.id), "quota": "events_per_run", "limit": cap,
                "used": min(stored, cap), "percent": round(100.0 * min(stored, cap) / cap, 1)}  # fmt: skip
        await stream.publish(
            session, bus=bus, org_id=run.org_id, run_id=run.id, kind="quota.warning", data=data
        )
    if stored >= cap:
        return await stop(session, bus=bus, run_id=run.id, cap=cap)
    return False


async def stop(session: AsyncSession, *, bus: LiveBus, run_id: uuid.UUID, cap: int) -> bool:
    """End a running run as ``stopped_quota`` with a quota story step (locked, once)."""
    run = await session.scalar(
        select(Run)
        .where(Run.id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if run is None or run.status != RunStatus.running:
        return False
    await runs_service.add_story_step(
        session, bus=bus, run=run, step_kind=StepKind.quota, severity=Severity.info,
        status="stopped", claim_title="Run stopped: event quota reached",
        claim_summary=f"This run reached {cap} events, the most one run may hold. "
        "The campaign stopped here; results so far are kept. An organisation owner "
        "can raise the events-per-run quota for later runs.",
        seq_start=run.last_seq, seq_end=run.last_seq,
    )  # fmt: skip
    await runs_service.finish_run(
        session, bus=bus, run=run, status=RunStatus.stopped_quota,
        reason=STOP_REASON.format(cap=cap),
    )  # fmt: skip
    return True
