"""Organisations a user belongs to, and the members of one organisation.

Functions add to the caller's transaction, never commit. The rule that an
organisation always keeps at least one OWNER lives here, so no route can
leave an org nobody can manage.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.scope import in_org
from cogumi.errors import Conflict, NotFound
from cogumi.tenancy import audit
from cogumi.tenancy.deps import Member
from cogumi.tenancy.models import LoginSession, Membership, Role, User

LAST_OWNER_RULE = "last_owner"


async def switch_org(session: AsyncSession, *, login: LoginSession, org_id: uuid.UUID) -> Role:
    """Make ``org_id`` the session's current org; 404 unless the user is a member."""
    role = await session.scalar(
        select(Membership.role).where(
            Membership.user_id == login.user_id, Membership.org_id == org_id
        )
    )
    if role is None:
        raise NotFound("organisation not found")
    login.current_org_id = org_id
    return role


async def list_members(
    session: AsyncSession, *, org_id: uuid.UUID
) -> list[tuple[Membership, User]]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
        .order_by(Membership.created_at, User.email)
    )
    return [(membership, user) for membership, user in rows.all()]


async def _membership(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
    """The member row inside ``org_id``; other orgs' members answer 404 like missing ones."""
    row: Membership | None = await session.scalar(
        in_org(Membership, org_id).where(Membership.user_id == user_id)
    )
    if row is None:
        raise NotFound("member not found")
    return row


async def _keep_an_owner(session: AsyncSession, membership: Membership) -> None:
    """409 if ``membership`` is the org's only OWNER.

    The OWNER rows are locked (PostgreSQL), so two owners demoting each other
    at once cannot both succeed; SQLite serialises writers anyway.
    """
    if membership.role != Role.OWNER:
        return
    owners = (
        await session.scalars(
            in_org(Membership, membership.org_id)
            .where(Membership.role == Role.OWNER)
            .with_for_update()
        )
    ).all()
    if len(owners) <= 1:
        raise Conflict(
            "an organisation must keep at least one OWNER; make someone else OWNER first",
            rule=LAST_OWNER_RULE,
        )


async def change_role(
    session: AsyncSession, *, actor: Member, user_id: uuid.UUID, role: Role, ip: str = ""
) -> Membership:
    """Give a member a new role (audit ``member.role_changed``); a no-op if it is the same."""
    membership = await _membership(session, actor.org_id, user_id)
    old = membership.role
    if old == role:
        return membership
    if role != Role.OWNER:
        await _keep_an_owner(session, membership)
    membership.role = role
    audit.record_by(
        session,
        actor.principal,
        org_id=actor.org_id,
        action=audit.Action.MEMBER_ROLE_CHANGED,
        target_type="user",
        target_id=user_id,
        detail={"old_role": old.value, "new_role": role.value},
        ip=ip,
    )
    await session.flush()
    return membership


async def remove_member(
    session: AsyncSession, *, actor: Member, user_id: uuid.UUID, ip: str = ""
) -> None:
    """Remove a member (audit ``member.removed``); their sessions lose the org at once."""
    membership = await _membership(session, actor.org_id, user_id)
    await _keep_an_owner(session, membership)
    old = membership.role
    await session.delete(membership)
    # Access is re-checked against memberships on every request; clearing the
    # current org as well keeps their sessions from pointing at it.
    await session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.current_org_id == actor.org_id)
        .values(current_org_id=None)
    )
    audit.record_by(
        session,
        actor.principal,
        org_id=actor.org_id,
        action=audit.Action.MEMBER_REMOVED,
        target_type="user",
        target_id=user_id,
        detail={"old_role": old.value},
        ip=ip,
    )
    await session.flush()
