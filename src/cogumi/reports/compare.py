"""Compare two runs of a project by finding fingerprint: new, fixed, persisting.

A fingerprint is stable across a project's runs (project, technique, script),
so the same weakness found again has the same one. A finding whose
fingerprint was triaged ``fixed`` in any earlier run of the project and shows
up again is a *regression*: the fix did not hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.scope import in_org
from cogumi.errors import InvalidInput
from cogumi.findings.models import Finding, TriageStatus
from cogumi.findings.service import list_findings
from cogumi.runs.models import Run, RunStatus


async def previous_run(session: AsyncSession, *, run: Run) -> Run | None:
    """The project's latest completed run created before ``run``."""
    query = (
        in_org(Run, run.org_id)
        .where(Run.project_id == run.project_id, Run.status == RunStatus.completed)
        .where(Run.created_at < run.created_at, Run.id != run.id)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(1)
    )
    found: Run | None = await session.scalar(query)
    return found


def check_pair(run: Run, base: Run) -> None:
    if base.id == run.id:
        raise InvalidInput("with", "choose another run than the one being compared")
    if base.project_id != run.project_id:
        raise InvalidInput("with", "runs of different projects have no findings in common")


async def regressions(
    session: AsyncSession, *, run: Run, fingerprints: Collection[str]
) -> frozenset[str]:
    """Fingerprints of ``run`` triaged ``fixed`` in an earlier run of the same project."""
    if not fingerprints:
        return frozenset()
    query = (
        select(Finding.fingerprint)
        .join(Run, Run.id == Finding.run_id)
        .where(Finding.org_id == run.org_id, Finding.project_id == run.project_id)
        .where(Finding.fingerprint.in_(list(fingerprints)), Finding.run_id != run.id)
        .where(Finding.triage_status == TriageStatus.fixed, Run.created_at < run.created_at)
    )
    return frozenset((await session.scalars(query)).all())


def _item(finding: Finding, regression: bool = False) -> dict[str, Any]:
    return {
        "fingerprint": finding.fingerprint,
        "finding_id": str(finding.id),
        "script_id": finding.script_id,
        "technique_id": finding.technique_id,
        "category": finding.category,
        "title": finding.title,
        "severity": finding.severity.value,
        "status": finding.status.value,
        "score": finding.score,
        "triage_status": finding.triage_status.value,
        "regression": regression,
    }


def _run_ref(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "status": run.status.value,
        "risk_score": run.risk_score,
        "created_at": run.created_at.isoformat(),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
    }


def _categories(now: Sequence[Finding], before: Sequence[Finding]) -> list[dict[str, Any]]:
    after_n, before_n = Counter(f.category for f in now), Counter(f.category for f in before)
    return [
        {
            "category": c,
            "before": before_n[c],
            "after": after_n[c],
            "delta": after_n[c] - before_n[c],
        }
        for c in sorted(set(after_n) | set(before_n))
    ]


async def compare(session: AsyncSession, *, run: Run, base: Run | None) -> dict[str, Any]:
    """What changed from ``base`` to ``run`` (everything is new when there is no base)."""
    now = list(await list_findings(session=session, run=run))
    before = list(await list_findings(session=session, run=base)) if base else []
    back = await regressions(session, run=run, fingerprints=[f.fingerprint for f in now])
    old = {f.fingerprint: f for f in before}
    current = {f.fingerprint for f in now}
    delta = (
        run.risk_score - base.risk_score
        if base is not None and run.risk_score is not None and base.risk_score is not None
        else None
    )
    return {
        "run": _run_ref(run),
        "base_run": _run_ref(base) if base else None,
        "risk_delta": delta,
        "new": [_item(f, f.fingerprint in back) for f in now if f.fingerprint not in old],
        "persisting": [_item(f, f.fingerprint in back) for f in now if f.fingerprint in old],
        "fixed": [_item(f) for f in before if f.fingerprint not in current],
        "regressions": sorted(back),
        "categories": _categories(now, before),
    }
