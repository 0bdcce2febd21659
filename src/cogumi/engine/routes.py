"""Attack library API: what can run, the org's custom scripts, a project's prompt variants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import Field, StringConstraints
from sqlalchemy import select

from cogumi.engine import custom, variants
from cogumi.engine.library.styles import Variant
from cogumi.engine.models import PromptVariant
from cogumi.errors import InvalidInput
from cogumi.projects import service as projects_service
from cogumi.schemas import Input, Name, Output
from cogumi.tenancy.deps import DbSession, ProjectWriter, Reader

router = APIRouter(tags=["library"])


class ScriptOut(Output):
    id: str
    title: str
    technique: str
    category: str
    severity: str
    kind: str
    builtin: bool
    owasp_llm: list[str]
    steps: int


class LibraryOut(Output):
    scripts: list[ScriptOut]
    styles: list[str]


class CustomIn(Input):
    name: Name
    document: dict[str, Any] = Field(
        description="Techniques and scripts in the library's YAML/JSON format."
    )


class CustomOut(Output):
    id: uuid.UUID
    name: str
    script_ids: list[str]
    created_at: datetime


class CustomList(Output):
    items: list[CustomOut]


class VariantIn(Input):
    script_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    step_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class VariantOut(Output):
    id: uuid.UUID
    script_id: str
    step_id: str
    style: str
    text: str
    source: str
    last_used_at: datetime | None
    use_count: int


class VariantList(Output):
    items: list[VariantOut]


@router.get("/library", response_model=LibraryOut)
async def library(member: Reader, session: DbSession) -> LibraryOut:
    """Every script your org can run: built-ins and your custom ones."""
    lib = await custom.org_library(session, org_id=member.org_id)
    scripts = []
    for script in lib.scripts.values():
        technique = lib.technique_of(script)
        scripts.append(
            ScriptOut(
                id=script.id,
                title=script.title,
                technique=technique.id,
                category=technique.category,
                severity=technique.severity,
                kind=script.kind,
                builtin=script.builtin,
                owasp_llm=list(technique.owasp_llm),
                steps=len(script.steps),
            )
        )
    return LibraryOut(scripts=scripts, styles=sorted(lib.styles))


@router.post("/custom-scripts", status_code=status.HTTP_201_CREATED, response_model=CustomOut)
async def add_custom(body: CustomIn, member: ProjectWriter, session: DbSession) -> CustomOut:
    """Add techniques and scripts of your own; they run exactly like the built-ins."""
    row = await custom.save(session, member=member, name=body.name, document=body.document)
    return CustomOut.model_validate(row)


@router.get("/custom-scripts", response_model=CustomList)
async def list_custom(member: Reader, session: DbSession) -> CustomList:
    rows = await custom.libraries_of(session, org_id=member.org_id)
    return CustomList(items=[CustomOut.model_validate(r) for r in rows])


@router.delete("/custom-scripts/{library_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_custom(library_id: uuid.UUID, member: ProjectWriter, session: DbSession) -> None:
    await custom.delete_library(session, member=member, library_id=library_id)


@router.get("/projects/{project_id}/prompt-variants", response_model=VariantList)
async def list_variants(project_id: uuid.UUID, member: Reader, session: DbSession) -> VariantList:
    """The phrasings this project's campaigns rotate through, least recently used first."""
    await projects_service.get_project(session=session, org_id=member.org_id, project_id=project_id)
    rows = (
        await session.scalars(
            select(PromptVariant)
            .where(PromptVariant.project_id == project_id, PromptVariant.org_id == member.org_id)
            .order_by(PromptVariant.script_id, PromptVariant.step_id, PromptVariant.created_at)
        )
    ).all()
    return VariantList(items=[VariantOut.model_validate(r) for r in rows])


@router.post(
    "/projects/{project_id}/prompt-variants",
    status_code=status.HTTP_201_CREATED,
    response_model=VariantList,
)
async def add_variant(
    project_id: uuid.UUID, body: VariantIn, member: ProjectWriter, session: DbSession
) -> VariantList:
    """Add your own phrasing of a script step; campaigns then rotate it in."""
    await projects_service.get_project(session=session, org_id=member.org_id, project_id=project_id)
    lib = await custom.org_library(session, org_id=member.org_id)
    script = lib.scripts.get(body.script_id)
    if script is None:
        raise InvalidInput("script_id", f"unknown script {body.script_id!r}")
    if body.step_id not in {s.id for s in script.steps}:
        raise InvalidInput("step_id", f"script {script.id} has no step {body.step_id!r}")
    await variants.store(
        session, org_id=member.org_id, project_id=project_id, script_id=script.id, step_id=body.step_id,
        variants=[Variant(variants.CUSTOMER_STYLE, body.text)], source="customer",
    )  # fmt: skip
    return await list_variants(project_id, member, session)
