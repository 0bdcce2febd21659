"""Projects API: CRUD, prod override, sidecar tokens, connect snippets, endpoint check.

Thin: parse, call a service, map. Writes need ADMIN or OWNER (``ProjectWriter``),
tokens ``TokensManager``, reads any member (``Reader``).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Body, status

from cogumi.errors import BadRequest, InvalidInput
from cogumi.projects import service, snippets, validation
from cogumi.projects.schemas import (
    ConnectSnippets,
    ProdOverrideIn,
    ProjectCreate,
    ProjectList,
    ProjectOut,
    ProjectUpdate,
    SidecarTokenCreate,
    SidecarTokenIssued,
    SidecarTokenList,
    SidecarTokenOut,
    ValidateEndpointIn,
    ValidateEndpointOut,
)
from cogumi.tenancy.deps import (
    AppSettings,
    DbSession,
    ProjectWriter,
    Reader,
    TokensManager,
    finish_transaction,
)

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
async def create_project(
    body: ProjectCreate, session: DbSession, member: ProjectWriter, settings: AppSettings
) -> ProjectOut:
    """Create a project in your current organisation (names are unique per org)."""
    project = await service.create_project(
        session=session, member=member, data=body, settings=settings
    )
    return ProjectOut.model_validate(project)


@router.get("", response_model=ProjectList)
async def list_projects(session: DbSession, member: Reader) -> ProjectList:
    projects = await service.list_projects(session=session, org_id=member.org_id)
    return ProjectList(items=[ProjectOut.model_validate(p) for p in projects])


@router.get("/{project_id}", response_model=ProjectOut)
async def get_project(project_id: uuid.UUID, session: DbSession, member: Reader) -> ProjectOut:
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    return ProjectOut.model_validate(project)


@router.patch("/{project_id}", response_model=ProjectOut)
async def update_project(
    project_id: uuid.UUID,
    body: ProjectUpdate,
    session: DbSession,
    member: ProjectWriter,
    settings: AppSettings,
) -> ProjectOut:
    """Change the fields sent. Changing the environment turns the prod override off."""
    try:
        changes = body.changes()
    except ValueError as exc:
        raise InvalidInput(str(exc), "may not be null", "null_not_allowed") from exc
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    project = await service.update_project(
        session=session, member=member, project=project, changes=changes, settings=settings
    )
    return ProjectOut.model_validate(project)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_project(project_id: uuid.UUID, session: DbSession, member: ProjectWriter) -> None:
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    await service.delete_project(session=session, member=member, project=project)


@router.post("/{project_id}/prod-override", response_model=ProjectOut)
async def prod_override(
    project_id: uuid.UUID, body: ProdOverrideIn, session: DbSession, member: ProjectWriter
) -> ProjectOut:
    """Allow runs against a prod project (three confirmations), or stop allowing them."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    project = await service.set_prod_override(
        session=session, member=member, project=project, body=body
    )
    return ProjectOut.model_validate(project)


@router.post(
    "/{project_id}/sidecar-tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=SidecarTokenIssued,
)
async def create_sidecar_token(
    project_id: uuid.UUID, body: SidecarTokenCreate, session: DbSession, member: TokensManager
) -> SidecarTokenIssued:
    """Mint a sidecar token; ``token`` is shown in this answer only."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    row, plaintext = await service.create_sidecar_token(
        session=session, member=member, project=project, name=body.name
    )
    out = SidecarTokenOut.model_validate(row)
    return SidecarTokenIssued(**out.model_dump(), token=plaintext)


@router.get("/{project_id}/sidecar-tokens", response_model=SidecarTokenList)
async def list_sidecar_tokens(
    project_id: uuid.UUID, session: DbSession, member: Reader
) -> SidecarTokenList:
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    rows = await service.list_sidecar_tokens(session=session, project=project)
    return SidecarTokenList(items=[SidecarTokenOut.model_validate(r) for r in rows])


@router.delete("/{project_id}/sidecar-tokens/{token_id}", response_model=SidecarTokenOut)
async def revoke_sidecar_token(
    project_id: uuid.UUID, token_id: uuid.UUID, session: DbSession, member: TokensManager
) -> SidecarTokenOut:
    """Revoke with immediate effect (the sidecar's next call gets 403)."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    row = await service.revoke_sidecar_token(
        session=session, member=member, project=project, token_id=token_id
    )
    return SidecarTokenOut.model_validate(row)


@router.get("/{project_id}/connect-snippets", response_model=ConnectSnippets)
async def connect_snippets(
    project_id: uuid.UUID, session: DbSession, member: Reader, settings: AppSettings
) -> ConnectSnippets:
    """Deployment snippets filled with this project's values; the token is a placeholder."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    return ConnectSnippets(
        project_id=project.id,
        ingest_url=settings.base_url,
        token_placeholder=snippets.TOKEN_PLACEHOLDER,
        snippets=snippets.connect_snippets(project, settings),
    )


@router.post("/{project_id}/validate-agent-endpoint", response_model=ValidateEndpointOut)
async def validate_agent_endpoint(
    project_id: uuid.UUID,
    session: DbSession,
    member: ProjectWriter,
    settings: AppSettings,
    body: ValidateEndpointIn | None = Body(default=None),
) -> ValidateEndpointOut:
    """Call ``POST {url}/health`` (or a harmless ``/message`` ping) and report the outcome."""
    project = await service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    url = (body.url if body else None) or project.agent_test_url
    if not url:
        raise BadRequest('the project has no agent_test_url; send {"url": ...} to test one')
    await finish_transaction(session)
    check = await validation.validate_endpoint(url, settings=settings)
    return ValidateEndpointOut(**check.__dict__)
