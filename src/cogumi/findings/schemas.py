"""Read and triage shapes of findings (CONTRACTS.md "Finding")."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import StringConstraints

from cogumi.findings.models import Finding, FindingStatus, TriageStatus
from cogumi.schemas import Input, Output


class NarrativeStep(Output):
    label: str
    event_id: str


class TriageOut(Output):
    status: TriageStatus
    owner: str | None
    eta: date | None
    why_it_works: str
    verification_step: str


class FindingOut(Output):
    id: uuid.UUID
    run_id: uuid.UUID
    project_id: uuid.UUID
    script_id: str
    technique_id: str
    category: str
    title: str
    severity: str
    status: FindingStatus
    score: int
    confidence: float
    summary: str
    evidence_event_ids: list[str]
    narrative_steps: list[NarrativeStep]
    remediation_md: str
    owasp: dict[str, Any]
    fingerprint: str
    triage: TriageOut
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Finding) -> FindingOut:
        return cls(
            id=row.id,
            run_id=row.run_id,
            project_id=row.project_id,
            script_id=row.script_id,
            technique_id=row.technique_id,
            category=row.category,
            title=row.title,
            severity=row.severity.value,
            status=row.status,
            score=row.score,
            confidence=row.confidence,
            summary=row.summary,
            evidence_event_ids=list(row.evidence_event_ids),
            narrative_steps=[NarrativeStep.model_validate(s) for s in row.narrative_steps],
            remediation_md=row.remediation_md,
            owasp=dict(row.owasp),
            fingerprint=row.fingerprint,
            triage=TriageOut(
                status=row.triage_status,
                owner=row.owner,
                eta=row.eta,
                why_it_works=row.why_it_works,
                verification_step=row.verification_step,
            ),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class FindingList(Output):
    items: list[FindingOut]


class TriageIn(Input):
    """Only the fields sent change; ``owner``/``eta`` may be sent as null to clear them."""

    status: TriageStatus | None = None
    owner: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    eta: date | None = None
    why_it_works: Annotated[str, StringConstraints(max_length=4000)] | None = None
    verification_step: Annotated[str, StringConstraints(max_length=4000)] | None = None

    def changes(self) -> dict[str, Any]:
        """The sent fields; raises ValueError naming a non-clearable field sent as null."""
        data = {name: getattr(self, name) for name in self.model_fields_set}
        for name, value in data.items():
            if value is None and name not in {"owner", "eta"}:
                raise ValueError(name)
        return data
