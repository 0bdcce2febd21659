"""Invitations: OWNERs invite by email; the link's holder previews and accepts it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from cogumi.errors import Forbidden, InvalidInput
from cogumi.tenancy import service, service_invitations
from cogumi.tenancy.cookies import client_ip, set_login_cookies
from cogumi.tenancy.deps import AppSettings, CurrentPrincipal, DbSession, MembersManager
from cogumi.tenancy.routes_orgs import me_out
from cogumi.tenancy.schemas import (
    AcceptIn,
    InvitationCreatedOut,
    InvitationCreateIn,
    InvitationOut,
    InvitationPreviewOut,
    MeOut,
    OrgOut,
    UserOut,
)

router = APIRouter(prefix="/invitations", tags=["invitations"])

Token = Annotated[str, Path(min_length=16, max_length=128, description="The token from the link.")]
# Revoking (by id) and previewing (by link token) share one path template, as OpenAPI
# requires of paths that differ only in a parameter's name: ``/invitations/{invitation}``.
InvitationId = Annotated[
    uuid.UUID, Path(alias="invitation", description="The invitation's id (from the list).")
]
TokenOfLink = Annotated[
    str,
    Path(alias="invitation", min_length=16, max_length=128, description="The token from the link."),
]
_GONE: dict[int | str, dict[str, Any]] = {
    410: {"description": "The invitation expired, was used, or was revoked."}
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InvitationCreatedOut)
async def create_invitation(
    body: InvitationCreateIn,
    request: Request,
    session: DbSession,
    member: MembersManager,
    settings: AppSettings,
) -> InvitationCreatedOut:
    """Invite an email address with a role (OWNER only).

    With SMTP configured the link is mailed and not returned; without it,
    ``invite_url`` is returned this once for you to pass on.
    """
    invitation, url = await service_invitations.create_invitation(
        session,
        actor=member,
        email=body.email,
        role=body.role,
        settings=settings,
        ip=client_ip(request),
    )
    out = InvitationOut.model_validate(invitation).model_dump()
    return InvitationCreatedOut(**out, delivery="link" if url else "email", invite_url=url)


@router.get("", response_model=list[InvitationOut])
async def list_invitations(session: DbSession, member: MembersManager) -> list[InvitationOut]:
    """Invitations not yet accepted, revoked or expired (OWNER only); never their links."""
    rows = await service_invitations.pending_invitations(session, org_id=member.org_id)
    return [InvitationOut.model_validate(row) for row in rows]


@router.delete("/{invitation}", status_code=status.HTTP_204_NO_CONTENT, responses=_GONE)
async def revoke_invitation(
    invitation_id: InvitationId, request: Request, session: DbSession, member: MembersManager
) -> None:
    """Revoke an invitation so its link stops working (OWNER only)."""
    await service_invitations.revoke_invitation(
        session, actor=member, invitation_id=invitation_id, ip=client_ip(request)
    )


@router.get("/{invitation}", response_model=InvitationPreviewOut, responses=_GONE)
async def preview_invitation(token: TokenOfLink, session: DbSession) -> InvitationPreviewOut:
    """What the link offers: org name, role, invited email, expiry. No sign-in needed."""
    invitation, org = await service_invitations.open_invitation(session, token=token)
    return InvitationPreviewOut(
        org_name=org.name,
        email=invitation.email,
        role=invitation.role,
        expires_at=invitation.expires_at,
    )


@router.post("/{token}/accept", response_model=MeOut, responses=_GONE)
async def accept_invitation(
    token: Token,
    request: Request,
    response: Response,
    session: DbSession,
    principal: CurrentPrincipal,
    settings: AppSettings,
    body: AcceptIn | None = None,
) -> MeOut:
    """Join the org. Signed in: as yourself (the invited email). Anonymous: send
    ``password`` (and ``display_name``) to create the invited account; you are signed in.
    Either way the org becomes your current one.
    """
    if principal.api_key is not None:
        raise Forbidden("an API key cannot accept an invitation")
    if principal.user is not None:
        await service_invitations.accept_as_user(
            session,
            token=token,
            user=principal.user,
            login=principal.session,
            ip=client_ip(request),
        )
        return await me_out(session, principal, settings)
    if body is None or body.password is None:
        raise InvalidInput("password", "choose a password to create your account")
    user, org, role = await service_invitations.accept_as_new_user(
        session,
        token=token,
        password=body.password,
        display_name=body.display_name,
        ip=client_ip(request),
    )
    session_token = await service.start_session(
        session,
        user=user,
        ttl=timedelta(hours=settings.session_ttl_hours),
        org_id=org.id,
        user_agent=request.headers.get("user-agent", ""),
    )
    csrf = set_login_cookies(response, session_token, settings)
    current = OrgOut(id=org.id, name=org.name, role=role)
    return MeOut(
        user=UserOut.model_validate(user), current_org=current, orgs=[current], csrf_token=csrf
    )
