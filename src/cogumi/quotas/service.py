"""Quota checks and usage: projects, runs per month and per project-day, events per
run, estimated storage.

Every check runs inside the caller's transaction and never commits, so a
refused request leaves nothing behind and an accepted one is counted exactly
when its row is written. Counters are changed by a conditional ``UPDATE``
(see :mod:`cogumi.quotas.models`), which keeps limits exact under
concurrency on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.errors import TooManyRequests
from cogumi.projects.models import Project
from cogumi.quotas.models import OrgQuota, QuotaCounter
from cogumi.runs.models import ACTIVE_STATUSES, Run

EVENT_ROW_OVERHEAD = 400
"""Bytes an event row costs beyond its payload (columns, indexes): the estimate's constant."""
QUOTA_NAMES = (
    "projects",
    "runs_per_month",
    "runs_per_day_per_project",
    "events_per_run",
    "storage_bytes",
)
WAIT_FOR_CLEANUP_SEC = 3600


class QuotaExceeded(TooManyRequests):
    """429 ``{error: "quota_exceeded", message, quota, limit, used, retry_after}``."""

    code = "quota_exceeded"

    def __init__(self, quota: str, *, limit: int, used: int, retry_after: int, what: str) -> None:
        super().__init__(
            f"quota {quota} reached: {what} ({used} of {limit})",
            retry_after=max(1, retry_after),
            quota=quota,
            limit=limit,
            used=used,
        )


@dataclass(frozen=True)
class Limits:
    projects: int
    runs_per_month: int
    runs_per_day_per_project: int
    events_per_run: int
    storage_bytes: int


# --- rows --------------------------------------------------------------------


def _insert_ignore(session: AsyncSession, model: type[Any]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the session's dialect."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing()
    return insert(model)  # pragma: no cover - only the two supported databases


async def quota_row(session: AsyncSession, *, org_id: uuid.UUID, lock: bool = False) -> OrgQuota:
    """The org's quota row, created on first use (race-safe); ``lock`` holds it for update."""
    await session.execute(_insert_ignore(session, OrgQuota).values(id=uuid.uuid4(), org_id=org_id))
    query = (
        select(OrgQuota).where(OrgQuota.org_id == org_id).execution_options(populate_existing=True)
    )
    row = await session.scalar(query.with_for_update() if lock else query)
    assert row is not None
    return row


def limits_of(row: OrgQuota | None, settings: Settings) -> Limits:
    """The org's overrides over the deployment defaults."""

    def pick(name: str) -> int:
        value = getattr(row, name, None) if row is not None else None
        return int(value) if value is not None else int(getattr(settings, f"quota_{name}"))

    return Limits(**{name: pick(name) for name in QUOTA_NAMES})


async def limits_for(session: AsyncSession, *, org_id: uuid.UUID, settings: Settings) -> Limits:
    row = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == org_id))
    return limits_of(row, settings)


def storage_used(row: OrgQuota) -> int:
    return max(0, row.stored_event_bytes) + max(0, row.stored_events) * EVENT_ROW_OVERHEAD


# --- periods -----------------------------------------------------------------


def month_key(now: datetime) -> str:
    return f"runs_month:{now:%Y-%m}"


def day_key(project_id: uuid.UUID, now: datetime) -> str:
    return f"runs_day:{project_id.hex}:{now:%Y-%m-%d}"


def until_next_month(now: datetime) -> int:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return int((following - now).total_seconds()) + 1


def until_next_day(now: datetime) -> int:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return int((midnight - now).total_seconds()) + 1


# --- checks ------------------------------------------------------------------


async def check_project_quota(
    session: AsyncSession, *, org_id: uuid.UUID, settings: Settings
) -> None:
    """Before creating a project: the org row is locked, so concurrent creations count in turn."""
    row = await quota_row(session, org_id=org_id, lock=True)
    limit = limits_of(row, settings).projects
    used = await count_projects(session, org_id=org_id)
    if used >= limit:
        raise QuotaExceeded(
            "projects", limit=limit, used=used, retry_after=WAIT_FOR_CLEANUP_SEC,
            what="delete a project or ask the organisation owner to raise the limit",
        )  # fmt: skip


async def count_projects(session: AsyncSession, *, org_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(Project).where(Project.org_id == org_id)
    return int(await session.scalar(query) or 0)


async def counter_used(session: AsyncSession, *, org_id: uuid.UUID, key: str) -> int:
    query = select(QuotaCounter.used).where(QuotaCounter.org_id == org_id, QuotaCounter.key == key)
    return int(await session.scalar(query) or 0)


async def _charge(session: AsyncSession, *, org_id: uuid.UUID, key: str, limit: int) -> int | None:
    """Add one to the counter if it stays within ``limit``; the new value, or None if full."""
    await session.execute(
        _insert_ignore(session, QuotaCounter).values(
            id=uuid.uuid4(), org_id=org_id, key=key, used=0
        )
    )
    used = await session.scalar(
        update(QuotaCounter)
        .where(QuotaCounter.org_id == org_id, QuotaCounter.key == key, QuotaCounter.used < limit)
        .values(used=QuotaCounter.used + 1)
        .returning(QuotaCounter.used)
    )
    return int(used) if used is not None else None


async def check_storage(session: AsyncSession, *, row: OrgQuota | None, limits: Limits) -> None:
    used = storage_used(row) if row is not None else 0
    if used >= limits.storage_bytes:
        raise storage_exceeded(limits=limits, used=used)


def storage_exceeded(*, limits: Limits, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        "storage_bytes", limit=limits.storage_bytes, used=used,
        retry_after=WAIT_FOR_CLEANUP_SEC,
        what="old runs are deleted by retention; or ask the owner to raise the limit",
    )  # fmt: skip


async def charge_run(
    session: AsyncSession, *, project: Project, settings: Settings, now: datetime | None = None
) -> Limits:
    """Count one new run against the org's month and the project's day (or raise 429)."""
    now = now or utcnow()
    row = await quota_row(session, org_id=project.org_id)
    limits = limits_of(row, settings)
    await check_storage(session, row=row, limits=limits)
    checks = (
        ("runs_per_month", month_key(now), limits.runs_per_month, until_next_month(now)),
        ("runs_per_day_per_project", day_key(project.id, now),
         limits.runs_per_day_per_project, until_next_day(now)),
    )  # fmt: skip
    for quota, key, limit, wait in checks:
        if await _charge(session, org_id=project.org_id, key=key, limit=limit) is None:
            used = await counter_used(session, org_id=project.org_id, key=key)
            raise QuotaExceeded(
                quota, limit=limit, used=used, retry_after=wait,
                what="no more runs until the period ends",
            )  # fmt: skip
    return limits


async def add_storage(
    session: AsyncSession, *, org_id: uuid.UUID, events: int, payload_bytes: int
) -> None:
    """Move the org's storage estimate (negative values after deletions).

    One statement once the org's row exists (ingest calls this for every batch).
    """
    if not events and not payload_bytes:
        return
    change = (
        update(OrgQuota)
        .where(OrgQuota.org_id == org_id)
        .values(
            stored_events=OrgQuota.stored_events + events,
            stored_event_bytes=OrgQuota.stored_event_bytes + payload_bytes,
        )
    )
    result: Any = await session.execute(change)
    if not result.rowcount:
        await quota_row(session, org_id=org_id)
        await session.execute(change)


# --- usage -------------------------------------------------------------------


async def _busiest_project_today(session: AsyncSession, *, org_id: uuid.UUID, now: datetime) -> int:
    query = select(func.max(QuotaCounter.used)).where(
        QuotaCounter.org_id == org_id,
        QuotaCounter.key.like("runs_day:%:" + f"{now:%Y-%m-%d}"),
    )
    return int(await session.scalar(query) or 0)


async def largest_active_run(
    session: AsyncSession, *, org_id: uuid.UUID, project_id: uuid.UUID | None = None
) -> int:
    """Events held by the org's (or one project's) largest queued or running run."""
    query = select(func.max(Run.last_seq)).where(
        Run.org_id == org_id, Run.status.in_(ACTIVE_STATUSES)
    )
    if project_id is not None:
        query = query.where(Run.project_id == project_id)
    return int(await session.scalar(query) or 0)


async def usage(
    session: AsyncSession, *, org_id: uuid.UUID, settings: Settings
) -> list[dict[str, Any]]:
    """Each quota with its limit, current use, percentage and whether it is overridden."""
    now = utcnow()
    row = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == org_id))
    limits = asdict(limits_of(row, settings))
    used = {
        "projects": await count_projects(session, org_id=org_id),
        "runs_per_month": await counter_used(session, org_id=org_id, key=month_key(now)),
        "runs_per_day_per_project": await _busiest_project_today(session, org_id=org_id, now=now),
        "events_per_run": await largest_active_run(session, org_id=org_id),
        "storage_bytes": storage_used(row) if row is not None else 0,
    }
    return [
        {
            "quota": name,
            "limit": limits[name],
            "used": used[name],
            "percent": round(100.0 * used[name] / limits[name], 1),
            "overridden": row is not None and getattr(row, name) is not None,
        }
        for name in QUOTA_NAMES
    ]


async def set_overrides(
    session: AsyncSession, *, org_id: uuid.UUID, changes: dict[str, int | None]
) -> dict[str, dict[str, int | None]]:
    """Apply overrides (None = back to the default); returns ``{name: {from, to}}`` changed."""
    row = await quota_row(session, org_id=org_id, lock=True)
    changed: dict[str, dict[str, int | None]] = {}
    for name, value in changes.items():
        if name not in QUOTA_NAMES:
            raise KeyError(name)
        if getattr(row, name) != value:
            changed[name] = {"from": getattr(row, name), "to": value}
            setattr(row, name, value)
    if changed:
        row.updated_at = utcnow()
        await session.flush()
    return changed
