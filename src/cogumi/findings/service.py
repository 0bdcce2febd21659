"""Findings: recording what a campaign proved, reading it, triaging it.

The fingerprint is sha256 over (project id, technique id, script id), so the
same weakness found again in a later run of the project has the same
fingerprint, and reports can tell new from fixed from persisting.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.errors import InvalidInput
from cogumi.events import stream
from cogumi.events.bus import LiveBus
from cogumi.findings.models import Finding, FindingStatus
from cogumi.findings.schemas import FindingOut, TriageIn
from cogumi.runs.models import Run, Severity
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import Member
from cogumi.webhooks import service as webhooks_service

MAX_EVIDENCE = 8


def fingerprint(*, project_id: uuid.UUID, technique_id: str, script_id: str) -> str:
    material = f"{project_id}|{technique_id}|{script_id}".encode()
    return hashlib.sha256(material).hexdigest()


def _narrative(steps: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"label": str(s.get("label", ""))[:500], "event_id": str(s.get("event_id", ""))}
        for s in steps[:MAX_EVIDENCE]
    ]


async def record_finding(
    session: AsyncSession,
    *,
    bus: LiveBus,
    run: Run,
    script_id: str,
    technique_id: str,
    category: str,
    title: str,
    severity: Severity | str,
    status: FindingStatus | str,
    score: int,
    confidence: float,
    summary: str,
    narrative_steps: Sequence[dict[str, Any]] = (),
    evidence_event_ids: Sequence[uuid.UUID | str] | None = None,
    remediation_md: str = "",
    owasp: dict[str, Any] | None = None,
) -> Finding:
    """Store one finding of ``run`` and announce it as ``finding.created``.

    Evidence ids default to the narrative's event ids, in order.
    """
    steps = _narrative(narrative_steps)
    evidence = [str(e) for e in (evidence_event_ids or [s["event_id"] for s in steps])]
    finding = Finding(
        id=uuid.uuid4(),
        org_id=run.org_id,
        run_id=run.id,
        project_id=run.project_id,
        script_id=script_id,
        technique_id=technique_id,
        category=category,
        title=title[:300],
        severity=Severity(severity),
        status=FindingStatus(status),
        score=max(0, min(100, int(score))),
        confidence=max(0.0, min(1.0, float(confidence))),
        summary=summary[:4000],
        evidence_event_ids=list(dict.fromkeys(evidence))[:MAX_EVIDENCE],
        narrative_steps=steps,
        remediation_md=remediation_md[:20000],
        owasp=owasp or {},
        fingerprint=fingerprint(
            project_id=run.project_id, technique_id=technique_id, script_id=script_id
        ),
    )
    session.add(finding)
    await session.flush()
    await session.refresh(finding)
    data = FindingOut.from_row(finding).model_dump(mode="json")
    await stream.publish(
        session, bus=bus, org_id=run.org_id, run_id=run.id, kind="finding.created", data=data
    )
    await webhooks_service.finding_created(session, finding=finding)
    return finding


async def list_findings(*, session: AsyncSession, run: Run) -> Sequence[Finding]:
    """A run's findings, most severe first (highest score, then newest)."""
    query = in_org(Finding, run.org_id).where(Finding.run_id == run.id)
    order = (Finding.score.desc(), Finding.created_at, Finding.id)
    return (await session.scalars(query.order_by(*order))).all()


async def get_finding(
    *, session: AsyncSession, org_id: uuid.UUID, finding_id: uuid.UUID
) -> Finding:
    return await get_in_org(session, Finding, finding_id, org_id, what="finding")


async def triage(
    *, session: AsyncSession, member: Member, finding: Finding, body: TriageIn
) -> Finding:
    """Apply triage changes (status, owner, eta, why it works, how to verify the fix)."""
    try:
        changes = body.changes()
    except ValueError as exc:
        raise InvalidInput(str(exc), "may not be null") from exc
    mapping = {"status": "triage_status"}
    for name, value in changes.items():
        setattr(finding, mapping.get(name, name), value)
    if changes:
        finding.triaged_by = member.user_id
        finding.updated_at = utcnow()
        await session.flush()
        record_by(
            session, member.principal, org_id=member.org_id, action=Action.FINDING_TRIAGED,
            target_type="finding", target_id=finding.id,
            detail={"run_id": str(finding.run_id), "changes": sorted(changes)},
        )  # fmt: skip
    return finding
