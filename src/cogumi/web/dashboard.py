"""The dashboard's read model: posture, heat map, action queue, projects, recent runs.

Read-only aggregate queries across areas, every one scoped by org with
``in_org``. A finding found again by a later run has the same fingerprint, so
open findings are counted once per fingerprint (the newest instance wins).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.scope import in_org
from cogumi.findings.models import Finding, TriageStatus
from cogumi.projects.models import Project
from cogumi.runs.models import Run, RunStatus

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
OPEN_FINDINGS_SCAN = 5000


@dataclass
class Posture:
    by_severity: dict[str, int]
    heat_rows: list[tuple[str, list[int]]]  # category -> counts per project (in project order)
    heat_max: int
    queue: list[Finding]
    trend: list[Run]
    projects: list[Project]
    last_runs: dict[uuid.UUID, Run]
    recent: list[Run]
    project_names: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def open_total(self) -> int:
        return sum(self.by_severity.values())


async def open_findings(session: AsyncSession, *, org_id: uuid.UUID) -> list[Finding]:
    """Open findings, one per fingerprint (the newest), most severe first."""
    rows = (
        await session.scalars(
            in_org(Finding, org_id)
            .where(Finding.triage_status == TriageStatus.open)
            .order_by(Finding.created_at.desc())
            .limit(OPEN_FINDINGS_SCAN)
        )
    ).all()
    newest: dict[str, Finding] = {}
    for row in rows:
        newest.setdefault(row.fingerprint, row)
    return sorted(newest.values(), key=lambda f: (SEVERITY_RANK.get(f.severity.value, 9), -f.score))


def heat_map(
    findings: Sequence[Finding], projects: Sequence[Project]
) -> tuple[list[tuple[str, list[int]]], int]:
    """Open findings counted by category (rows) x project (columns)."""
    counts = Counter((f.category, f.project_id) for f in findings)
    categories = sorted({f.category for f in findings})
    rows = [(c, [counts[(c, p.id)] for p in projects]) for c in categories]
    return rows, max(counts.values(), default=0)


async def last_run_per_project(session: AsyncSession, *, org_id: uuid.UUID) -> dict[uuid.UUID, Run]:
    latest = (
        select(Run.project_id, func.max(Run.created_at).label("at"))
        .where(Run.org_id == org_id)
        .group_by(Run.project_id)
        .subquery()
    )
    rows = await session.scalars(
        in_org(Run, org_id).join(
            latest, (Run.project_id == latest.c.project_id) & (Run.created_at == latest.c.at)
        )
    )
    return {run.project_id: run for run in rows.all()}


async def recent_runs(session: AsyncSession, *, org_id: uuid.UUID, limit: int) -> list[Run]:
    query = in_org(Run, org_id).order_by(Run.created_at.desc(), Run.id).limit(limit)
    return list((await session.scalars(query)).all())


async def risk_trend(session: AsyncSession, *, org_id: uuid.UUID, limit: int = 12) -> list[Run]:
    """The latest completed runs with a score, oldest first (for the trend chart)."""
    query = (
        in_org(Run, org_id)
        .where(Run.status == RunStatus.completed, Run.risk_score.is_not(None))
        .order_by(Run.created_at.desc())
        .limit(limit)
    )
    return list(reversed((await session.scalars(query)).all()))


async def posture(session: AsyncSession, *, org_id: uuid.UUID) -> Posture:
    projects = list(
        (await session.scalars(in_org(Project, org_id).order_by(Project.created_at))).all()
    )
    findings = await open_findings(session, org_id=org_id)
    by_severity = {name: 0 for name in SEVERITIES}
    for finding in findings:
        by_severity[finding.severity.value] += 1
    rows, heat_max = heat_map(findings, projects)
    return Posture(
        by_severity=by_severity,
        heat_rows=rows,
        heat_max=heat_max,
        queue=findings[:8],
        trend=await risk_trend(session, org_id=org_id),
        projects=projects,
        last_runs=await last_run_per_project(session, org_id=org_id),
        recent=await recent_runs(session, org_id=org_id, limit=8),
        project_names={p.id: p.name for p in projects},
    )


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    score: int
    label: str


def trend_points(runs: Sequence[Run], *, width: int = 320, height: int = 110) -> list[TrendPoint]:
    """Chart coordinates for the risk trend; every point also carries its number as text."""
    if not runs:
        return []
    pad_x, top, bottom = 22.0, 16.0, 20.0
    step = (width - 2 * pad_x) / max(len(runs) - 1, 1)
    points = []
    for index, run in enumerate(runs):
        score = int(run.risk_score or 0)
        y = top + (100 - score) / 100 * (height - top - bottom)
        label = run.created_at.strftime("%b %d") if run.created_at else ""
        points.append(
            TrendPoint(x=round(pad_x + index * step, 1), y=round(y, 1), score=score, label=label)
        )
    return points


def heat_level(count: int, maximum: int) -> int:
    """0..4 shade for a heat-map cell (the count itself is always printed too)."""
    if count <= 0 or maximum <= 0:
        return 0
    return max(1, min(4, round(count / maximum * 4)))
