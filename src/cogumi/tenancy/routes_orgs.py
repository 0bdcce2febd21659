"""Organisations of the signed-in user, and the members of the current organisation."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status

from cogumi.errors import Forbidden
from cogumi.tenancy import security, service, service_members
from cogumi.tenancy.cookies import client_ip
from cogumi.tenancy.deps import (
    AppSettings,
    CurrentUser,
    DbSession,
    MembersManager,
    Principal,
    Reader,
)
from cogumi.tenancy.models import Membership, Role, User
from cogumi.tenancy.schemas import MemberOut, MeOut, OrgCreateIn, OrgOut, RoleIn, UserOut

orgs_router = APIRouter(prefix="/orgs", tags=["orgs"])
members_router = APIRouter(prefix="/members", tags=["members"])


async def me_out(session: DbSession, principal: Principal, settings: AppSettings) -> MeOut:
    """The ``/me`` body for ``principal`` (also returned by org switch and invitation accept)."""
    if principal.user is None:
        return MeOut(
            user=None,
            api_key_prefix=principal.api_key.prefix if principal.api_key else None,
            current_org=None,
            orgs=[],
        )
    orgs = [
        OrgOut(id=o.id, name=o.name, role=r)
        for o, r in await service.orgs_of(session, principal.user.id)
    ]
    current_id = principal.session.current_org_id if principal.session else principal.org_id
    csrf = (
        security.csrf_token(principal.session_token, settings.resolved_secret_key())
        if principal.session_token
        else None
    )
    return MeOut(
        user=UserOut.model_validate(principal.user),
        current_org=next((o for o in orgs if o.id == current_id), None),
        orgs=orgs,
        csrf_token=csrf,
    )


@orgs_router.get("", response_model=list[OrgOut])
async def list_orgs(session: DbSession, principal: CurrentUser) -> list[OrgOut]:
    """Every organisation you belong to, with your role in it (signed-in users only)."""
    assert principal.user is not None
    return [
        OrgOut(id=o.id, name=o.name, role=r)
        for o, r in await service.orgs_of(session, principal.user.id)
    ]


@orgs_router.post("", status_code=status.HTTP_201_CREATED, response_model=OrgOut)
async def create_org(
    body: OrgCreateIn, request: Request, session: DbSession, principal: CurrentUser
) -> OrgOut:
    """Create an organisation; you become its OWNER. Your current org does not change."""
    assert principal.user is not None
    org = await service.create_org(
        session, name=body.name, owner=principal.user, ip=client_ip(request)
    )
    return OrgOut(id=org.id, name=org.name, role=Role.OWNER)


@orgs_router.post("/{org_id}/switch", response_model=MeOut)
async def switch_org(
    org_id: uuid.UUID, session: DbSession, principal: CurrentUser, settings: AppSettings
) -> MeOut:
    """Make ``org_id`` this session's current organisation (404 if you are not a member)."""
    if principal.session is None:
        raise Forbidden("only a browser session has a current organisation")
    await service_members.switch_org(session, login=principal.session, org_id=org_id)
    return await me_out(session, principal, settings)


def _member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=membership.role,
        joined_at=membership.created_at,
    )


@members_router.get("", response_model=list[MemberOut])
async def list_members(session: DbSession, member: Reader) -> list[MemberOut]:
    """Members of the current organisation, oldest first (any role)."""
    rows = await service_members.list_members(session, org_id=member.org_id)
    return [_member_out(m, u) for m, u in rows]


@members_router.patch("/{user_id}", response_model=MemberOut)
async def change_role(
    user_id: uuid.UUID, body: RoleIn, request: Request, session: DbSession, member: MembersManager
) -> MemberOut:
    """Give a member another role (OWNER only). The last OWNER cannot be demoted (409)."""
    await service_members.change_role(
        session, actor=member, user_id=user_id, role=body.role, ip=client_ip(request)
    )
    rows = await service_members.list_members(session, org_id=member.org_id)
    return next(_member_out(m, u) for m, u in rows if u.id == user_id)


@members_router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    user_id: uuid.UUID, request: Request, session: DbSession, member: MembersManager
) -> None:
    """Remove a member (OWNER only); their sessions lose this org at once. Not the last OWNER."""
    await service_members.remove_member(
        session, actor=member, user_id=user_id, ip=client_ip(request)
    )
