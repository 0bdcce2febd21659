"""Findings API: a run's findings, one finding, triage."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from cogumi.findings import service
from cogumi.findings.schemas import FindingList, FindingOut, TriageIn
from cogumi.runs import service as runs_service
from cogumi.tenancy.deps import DbSession, Reader, Triager

router = APIRouter(tags=["findings"])


@router.get("/runs/{run_id}/findings", response_model=FindingList)
async def run_findings(run_id: uuid.UUID, member: Reader, session: DbSession) -> FindingList:
    """What the run proved, most severe first, each with its chain of evidence."""
    run = await runs_service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    rows = await service.list_findings(session=session, run=run)
    return FindingList(items=[FindingOut.from_row(row) for row in rows])


@router.get("/findings/{finding_id}", response_model=FindingOut)
async def get_finding(finding_id: uuid.UUID, member: Reader, session: DbSession) -> FindingOut:
    row = await service.get_finding(session=session, org_id=member.org_id, finding_id=finding_id)
    return FindingOut.from_row(row)


@router.patch("/findings/{finding_id}", response_model=FindingOut)
async def triage_finding(
    finding_id: uuid.UUID, body: TriageIn, member: Triager, session: DbSession
) -> FindingOut:
    """Triage: status open|fixed|accepted, owner, eta, why it works, verification step."""
    row = await service.get_finding(session=session, org_id=member.org_id, finding_id=finding_id)
    row = await service.triage(session=session, member=member, finding=row, body=body)
    return FindingOut.from_row(row)
