"""The limits one project lives under, with what is used of each, for its settings page.

The org-wide figures come from the same counters and functions as ``GET
/api/quotas`` (:mod:`cogumi.quotas.service`); the per-project ones read the
project's own day counter and its own runs and events instead of the org's
busiest. Two limits are deployment settings rather than org quotas (the ingest
rate per token and the run duration cap), and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.events.models import Event
from cogumi.projects.models import Project
from cogumi.quotas import service
from cogumi.quotas.models import OrgQuota
from cogumi.runs.models import Run, RunStatus

NEAR = 80.0
"""Percent from which a line reads "near the limit" (the ``quota.warning`` threshold)."""

SINGULAR = ("runs", "events", "projects")
ORG_OWNER = "owner"
OPERATOR = "operator"


@dataclass(frozen=True)
class UsageLine:
    """One limit: what it counts, how much is used, and who may change it."""

    quota: str
    title: str
    scope: str
    used: int
    limit: int
    unit: str
    changed_by: str
    overridden: bool = False

    @property
    def percent(self) -> float:
        return round(100.0 * self.used / self.limit, 1) if self.limit > 0 else 0.0

    def figure(self, value: int) -> str:
        """``value`` in this line's unit, for people: ``1.0 GB``, ``15 min``, ``1,234 runs``."""
        if self.unit == "bytes":
            return _bytes(value)
        if self.unit == "seconds":
            return _duration(value)
        unit = self.unit[:-1] if value == 1 and self.unit in SINGULAR else self.unit
        return f"{value:,} {unit}"

    @property
    def state(self) -> str:
        """In words, so the line reads without colour."""
        if self.used >= self.limit:
            return "limit reached"
        return "near the limit" if self.percent >= NEAR else "within the limit"


def _bytes(value: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value} B"


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")


async def _busiest_token_last_minute(session: AsyncSession, *, project: Project) -> int:
    """Events the project's busiest sidecar token sent in the last minute (indexed range)."""
    per_token = (
        select(func.count().label("n"))
        .where(
            Event.project_id == project.id,
            Event.org_id == project.org_id,
            Event.received_at >= utcnow() - timedelta(minutes=1),
            Event.sidecar_token_id.is_not(None),
        )
        .group_by(Event.sidecar_token_id)
        .subquery()
    )
    return int(await session.scalar(select(func.max(per_token.c.n))) or 0)


async def _longest_running(session: AsyncSession, *, project: Project) -> int:
    """Seconds the project's longest running campaign has been going (0 when none runs)."""
    started = await session.scalar(
        select(func.min(Run.started_at)).where(
            Run.project_id == project.id,
            Run.org_id == project.org_id,
            Run.status == RunStatus.running,
        )
    )
    if started is None:
        return 0
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return max(0, int((datetime.now(UTC) - started).total_seconds()))


async def project_usage(
    session: AsyncSession, *, project: Project, settings: Settings
) -> list[UsageLine]:
    """Every limit that applies to ``project``, org-scoped by the project's own org."""
    org_id, now = project.org_id, utcnow()
    row = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == org_id))
    limits = service.limits_of(row, settings)

    def own(name: str) -> bool:
        return row is not None and getattr(row, name) is not None

    month = await service.counter_used(session, org_id=org_id, key=service.month_key(now))
    today = await service.counter_used(session, org_id=org_id, key=service.day_key(project.id, now))
    largest = await service.largest_active_run(session, org_id=org_id, project_id=project.id)
    return [
        UsageLine("runs_per_month", "Runs this month", "organisation", month,
                  limits.runs_per_month, "runs", ORG_OWNER, own("runs_per_month")),
        UsageLine("runs_per_day_per_project", "Runs today (UTC)", "this project", today,
                  limits.runs_per_day_per_project, "runs", ORG_OWNER,
                  own("runs_per_day_per_project")),
        UsageLine("events_per_run", "Events in one run", "largest active run of this project",
                  largest, limits.events_per_run, "events", ORG_OWNER, own("events_per_run")),
        UsageLine("projects", "Projects", "organisation",
                  await service.count_projects(session, org_id=org_id), limits.projects,
                  "projects", ORG_OWNER, own("projects")),
        UsageLine("storage_bytes", "Estimated storage", "organisation",
                  service.storage_used(row) if row is not None else 0, limits.storage_bytes,
                  "bytes", ORG_OWNER, own("storage_bytes")),
        UsageLine("ingest_per_min", "Ingest events per minute", "busiest sidecar token of "
                  "this project, last minute", await _busiest_token_last_minute(
                      session, project=project), settings.ingest_rate_limit_per_min,
                  "events/min", OPERATOR),
        UsageLine("run_duration_sec", "Run duration", "longest running campaign of this "
                  "project", await _longest_running(session, project=project),
                  settings.run_duration_cap_sec, "seconds", OPERATOR),
    ]  # fmt: skip
