"""Canary API: mint (values shown once), list (previews only), revoke."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, status
from pydantic import StringConstraints

from cogumi.projects import canaries, service
from cogumi.schemas import Input, Output
from cogumi.tenancy.deps import DbSession, ProjectWriter, Reader

router = APIRouter(prefix="/projects/{project_id}/canaries", tags=["canaries"])


class MintIn(Input):
    label: Annotated[str, StringConstraints(max_length=120)] = ""


class CanaryOut(Output):
    id: uuid.UUID
    kind: str
    preview: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


class MintedCanary(CanaryOut):
    value: str


class MintOut(Output):
    items: list[MintedCanary]
    snippet: dict[str, str]
    note: str = "Values are shown once. Plant them in the agent's sandbox (env, tool data)."


class CanaryList(Output):
    items: list[CanaryOut]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MintOut)
async def mint_canaries(
    project_id: uuid.UUID,
    session: DbSession,
    member: ProjectWriter,
    body: MintIn | None = Body(default=None),
) -> MintOut:
    """Mint fake OpenAI-, AWS- and JWT-shaped secrets for the agent's sandbox."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    minted = await canaries.mint(
        session, member=member, project=project, label=body.label if body else ""
    )
    items = [
        MintedCanary(**CanaryOut.model_validate(row).model_dump(), value=minted.values[row.kind])
        for row in minted.rows
    ]
    return MintOut(items=items, snippet=minted.snippet())


@router.get("", response_model=CanaryList)
async def list_canaries(project_id: uuid.UUID, session: DbSession, member: Reader) -> CanaryList:
    """The project's active canaries (kind and preview; never the value)."""
    await service.get_project(session=session, org_id=member.org_id, project_id=project_id)
    rows = await canaries.active_canaries(session, project_id=project_id, org_id=member.org_id)
    return CanaryList(items=[CanaryOut.model_validate(r) for r in rows])


@router.delete("/{canary_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_canary(
    project_id: uuid.UUID, canary_id: uuid.UUID, session: DbSession, member: ProjectWriter
) -> None:
    """Stop listing a canary; a later sighting still counts as a leak."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    await canaries.revoke(session, member=member, project=project, canary_id=canary_id)
