"""Saved prompts API: an org's kept adversary prompts and agent replies.

Reading needs any role; saving and deleting ``runs.start`` (MEMBER and up);
turning one into a custom script ``projects.write``, like adding custom scripts.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from cogumi.saved_prompts import service
from cogumi.saved_prompts.models import PromptKind
from cogumi.saved_prompts.schemas import (
    SavedPromptIn,
    SavedPromptList,
    SavedPromptOut,
    ToScriptIn,
    ToScriptOut,
)
from cogumi.tenancy.deps import DbSession, ProjectWriter, Reader, RunStarter

router = APIRouter(tags=["saved prompts"])


@router.get("/saved-prompts", response_model=SavedPromptList)
async def list_saved(
    member: Reader,
    session: DbSession,
    kind: Annotated[PromptKind | None, Query(description="adversary or reply")] = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
) -> SavedPromptList:
    """The org's saved prompts, newest first."""
    rows = await service.list_prompts(session, org_id=member.org_id, kind=kind, tag=tag)
    return SavedPromptList(items=[SavedPromptOut.model_validate(r) for r in rows])


@router.post("/saved-prompts", status_code=status.HTTP_201_CREATED, response_model=SavedPromptOut)
async def save_prompt(
    body: SavedPromptIn, member: RunStarter, session: DbSession
) -> SavedPromptOut:
    return SavedPromptOut.model_validate(await service.create(session, member=member, body=body))


@router.delete("/saved-prompts/{prompt_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_prompt(prompt_id: uuid.UUID, member: RunStarter, session: DbSession) -> None:
    await service.delete(session, org_id=member.org_id, prompt_id=prompt_id)


@router.post(
    "/saved-prompts/{prompt_id}/to-script",
    status_code=status.HTTP_201_CREATED,
    response_model=ToScriptOut,
    responses={200: {"description": "Already added: the existing custom script."}},
)
async def to_script(
    prompt_id: uuid.UUID,
    member: ProjectWriter,
    session: DbSession,
    response: Response,
    body: Annotated[ToScriptIn | None, Body()] = None,
) -> ToScriptOut:
    """Add the prompt to your custom scripts as a one-step script; runs can then choose it."""
    saved = await service.get(session, org_id=member.org_id, prompt_id=prompt_id)
    technique = body.technique if body else None
    row, chosen, created = await service.to_script(
        session, member=member, saved=saved, technique=technique
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return ToScriptOut(
        library_id=row.id,
        name=row.name,
        script_id=service.script_id_of(saved),
        technique=chosen,
        created=created,
    )
