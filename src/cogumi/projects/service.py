"""Projects, the production guardrail and sidecar tokens.

Services take keyword arguments and never commit: the request (or job) owns
the transaction, so a change and its audit row land together or not at all.
Every read goes through :mod:`cogumi.db.scope`, so another org's project is a
404 exactly like a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from cogumi.projects import urlguard
from cogumi.projects.models import Environment, Project, SidecarToken, TokenStatus
from cogumi.projects.schemas import ProdOverrideIn, ProjectCreate
from cogumi.tenancy import security
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import Member

MAX_ACTIVE_SIDECAR_TOKENS = 20
CONFIRMATIONS = ("not_customer_facing", "no_real_customer_secrets", "accepts_unsafe_behaviour")


# --- projects ----------------------------------------------------------------


def check_agent_url(url: str | None, *, settings: Settings) -> None:
    """The static guard again, now with the deployment's private-target rule."""
    if url is None:
        return
    try:
        urlguard.check_static(url, allow_private=settings.private_targets_allowed)
    except urlguard.UrlRefused as exc:
        raise InvalidInput("agent_test_url", exc.reason) from exc


async def _ensure_name_free(
    session: AsyncSession, *, org_id: uuid.UUID, name: str, except_id: uuid.UUID | None = None
) -> None:
    """Names are unique per org, ignoring case, so two projects never look alike."""
    query = in_org(Project, org_id).where(func.lower(Project.name) == name.lower())
    if except_id is not None:
        query = query.where(Project.id != except_id)
    if await session.scalar(query) is not None:
        raise Conflict(f"a project named {name!r} already exists", field="name")


async def create_project(
    *, session: AsyncSession, member: Member, data: ProjectCreate, settings: Settings
) -> Project:
    check_agent_url(data.agent_test_url, settings=settings)
    await _ensure_name_free(session, org_id=member.org_id, name=data.name)
    from cogumi.quotas.service import check_project_quota

    await check_project_quota(session, org_id=member.org_id, settings=settings)  # 429 when full
    values = data.model_dump(mode="json")
    values["environment"] = data.environment
    project = Project(id=uuid.uuid4(), org_id=member.org_id, created_by=member.user_id, **values)
    session.add(project)
    await session.flush()
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.PROJECT_CREATED,
        target_type="project",
        target_id=project.id,
        detail={"name": project.name, "environment": project.environment.value},
    )
    return project


async def list_projects(*, session: AsyncSession, org_id: uuid.UUID) -> Sequence[Project]:
    query = in_org(Project, org_id).order_by(Project.created_at, Project.id)
    return (await session.scalars(query)).all()


async def get_project(
    *, session: AsyncSession, org_id: uuid.UUID, project_id: uuid.UUID
) -> Project:
    return await get_in_org(session, Project, project_id, org_id, what="project")


def _clear_prod_override(project: Project) -> None:
    project.prod_override_enabled = False
    project.prod_override_by = None
    project.prod_override_at = None


async def update_project(
    *,
    session: AsyncSession,
    member: Member,
    project: Project,
    changes: dict[str, Any],
    settings: Settings,
) -> Project:
    """Apply the sent fields; the audit row names what changed, never the values."""
    if "agent_test_url" in changes:
        check_agent_url(changes["agent_test_url"], settings=settings)
    if "name" in changes:
        await _ensure_name_free(
            session, org_id=member.org_id, name=changes["name"], except_id=project.id
        )
    if "environment" in changes:
        changes["environment"] = Environment(changes["environment"])
    changed = sorted(k for k, v in changes.items() if getattr(project, k) != v)
    detail: dict[str, Any] = {"fields": changed}
    if "environment" in changed and project.prod_override_enabled:
        # A confirmation given for one environment does not carry over to another.
        _clear_prod_override(project)
        detail["prod_override_cleared"] = True
    for key in changed:
        setattr(project, key, changes[key])
    if changed:
        project.updated_at = utcnow()
        await session.flush()
        record_by(
            session,
            member.principal,
            org_id=member.org_id,
            action=Action.PROJECT_UPDATED,
            target_type="project",
            target_id=project.id,
            detail=detail,
        )
    return project


async def delete_project(*, session: AsyncSession, member: Member, project: Project) -> None:
    """Delete the project; its sidecar tokens go with it (foreign-key cascade)."""
    await session.execute(delete(SidecarToken).where(SidecarToken.project_id == project.id))
    await session.delete(project)
    await session.flush()
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.PROJECT_DELETED,
        target_type="project",
        target_id=project.id,
        detail={"name": project.name},
    )


# --- production guardrail ----------------------------------------------------


def check_run_allowed(project: Project) -> Literal["ok", "warning"]:
    """Sandbox runs freely; staging and overridden prod run with a warning; prod refuses."""
    if project.environment == Environment.prod:
        if not project.prod_override_enabled:
            raise Forbidden(
                "runs against a prod project are refused until the prod override is enabled",
                reason="prod_without_override",
            )
        return "warning"
    if project.environment == Environment.staging:
        return "warning"
    return "ok"


def _missing_confirmations(body: ProdOverrideIn) -> list[str]:
    given = body.confirmations.model_dump() if body.confirmations else {}
    return [name for name in CONFIRMATIONS if given.get(name) is not True]


async def set_prod_override(
    *, session: AsyncSession, member: Member, project: Project, body: ProdOverrideIn
) -> Project:
    """Turn the override on (three explicit confirmations) or off; audited either way."""
    if body.enabled:
        missing = _missing_confirmations(body)
        if missing:
            raise BadRequest(
                "all three confirmations must be true; missing: " + ", ".join(missing),
                missing=missing,
            )
        if project.environment != Environment.prod:
            raise Conflict("the prod override only applies to prod projects", field="environment")
        if project.prod_override_enabled:
            return project
        project.prod_override_enabled = True
        project.prod_override_by = member.user_id
        project.prod_override_at = utcnow()
        action, detail = Action.PROD_OVERRIDE_ENABLED, {"confirmations": list(CONFIRMATIONS)}
    else:
        if not project.prod_override_enabled:
            return project
        _clear_prod_override(project)
        action, detail = Action.PROD_OVERRIDE_DISABLED, {}
    await session.flush()
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=action,
        target_type="project",
        target_id=project.id,
        detail=detail,
    )
    return project


# --- sidecar tokens ----------------------------------------------------------


async def create_sidecar_token(
    *, session: AsyncSession, member: Member, project: Project, name: str
) -> tuple[SidecarToken, str]:
    """Mint a ``cgs_…`` token; the plaintext is returned once and only its hash is kept."""
    active = await session.scalar(
        select(func.count())
        .select_from(SidecarToken)
        .where(SidecarToken.project_id == project.id, SidecarToken.status == TokenStatus.active)
    )
    if (active or 0) >= MAX_ACTIVE_SIDECAR_TOKENS:
        raise Conflict(
            f"a project can have at most {MAX_ACTIVE_SIDECAR_TOKENS} active sidecar tokens; "
            "revoke one first"
        )
    issued = security.issue_prefixed_token("cgs")
    token = SidecarToken(
        id=uuid.uuid4(),
        org_id=project.org_id,
        project_id=project.id,
        name=name,
        prefix=issued.prefix,
        token_hash=issued.hash,
        created_by=member.user_id,
    )
    session.add(token)
    await session.flush()
    await session.refresh(token)
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.SIDECAR_TOKEN_CREATED,
        target_type="sidecar_token",
        target_id=token.id,
        detail={"project_id": str(project.id), "name": name, "prefix": token.prefix},
    )
    return token, issued.plaintext


async def list_sidecar_tokens(*, session: AsyncSession, project: Project) -> Sequence[SidecarToken]:
    query = (
        in_org(SidecarToken, project.org_id)
        .where(SidecarToken.project_id == project.id)
        .order_by(SidecarToken.created_at, SidecarToken.id)
    )
    return (await session.scalars(query)).all()


async def revoke_sidecar_token(
    *, session: AsyncSession, member: Member, project: Project, token_id: uuid.UUID
) -> SidecarToken:
    """Revoke with immediate effect; revoking again changes nothing."""
    token = await get_in_org(session, SidecarToken, token_id, project.org_id, what="sidecar token")
    if token.project_id != project.id:
        raise NotFound("sidecar token not found")
    if token.status == TokenStatus.revoked:
        return token
    token.status = TokenStatus.revoked
    token.revoked_at = utcnow()
    await session.flush()
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.SIDECAR_TOKEN_REVOKED,
        target_type="sidecar_token",
        target_id=token.id,
        detail={"project_id": str(project.id), "prefix": token.prefix},
    )
    return token


async def authenticate_sidecar_token(
    session: AsyncSession, token: str, *, project_id: uuid.UUID | None = None
) -> SidecarToken:
    """The token row for ingest and heartbeat: 401 unknown or malformed, 403 revoked.

    Not org-scoped on purpose: the token itself names its org and project.
    ``project_id``, when given, must be the token's project (403 otherwise).
    """
    prefix = security.split_prefixed_token(token, "cgs")
    row = None
    if prefix is not None:
        row = await session.scalar(select(SidecarToken).where(SidecarToken.prefix == prefix))
    if row is None or not security.token_matches(token, row.token_hash):
        raise Unauthenticated("invalid sidecar token")
    if row.status != TokenStatus.active:
        raise Forbidden("sidecar token revoked", reason="token_revoked")
    if project_id is not None and project_id != row.project_id:
        raise Forbidden("sidecar token belongs to another project", reason="wrong_project")
    return row
