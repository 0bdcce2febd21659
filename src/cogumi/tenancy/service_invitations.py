"""Invitations: a single-use link that lets one email address join one org with one role.

The link's token is 256 random bits and only its sha256 is stored, so the
link is shown (or mailed) once and cannot be recovered from the database.
Looking an invitation up by token is deliberately not org-scoped: the token
itself is the credential. Accepting claims the row with a conditional
UPDATE, so two simultaneous accepts cannot both succeed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.errors import Conflict, Forbidden, Gone, NotFound
from cogumi.tenancy import audit, mail, security
from cogumi.tenancy.deps import Member
from cogumi.tenancy.models import (
    Invitation,
    LoginSession,
    Membership,
    Organization,
    Role,
    User,
)
from cogumi.tenancy.service import find_user_by_email, normalize_email


def invite_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/invite/{token}"


async def _is_member(session: AsyncSession, org_id: uuid.UUID, email: str) -> bool:
    found = await session.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id, User.email == email)
    )
    return found is not None


def _pending(org_id: uuid.UUID) -> Select[Any]:
    return in_org(Invitation, org_id).where(
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > utcnow(),
    )


async def create_invitation(
    session: AsyncSession,
    *,
    actor: Member,
    email: str,
    role: Role,
    settings: Settings,
    ip: str = "",
) -> tuple[Invitation, str | None]:
    """Invite ``email``; returns the link only when it was not mailed (no SMTP configured)."""
    email = normalize_email(email)
    if await _is_member(session, actor.org_id, email):
        raise Conflict("this person is already a member of the organisation", field="email")
    if await session.scalar(_pending(actor.org_id).where(Invitation.email == email)):
        raise Conflict(
            "a pending invitation for this email exists; revoke it to send a new one",
            field="email",
        )
    token = security.random_token()
    invitation = Invitation(
        id=uuid.uuid4(),
        org_id=actor.org_id,
        email=email,
        role=role,
        token_hash=security.sha256_hex(token),
        invited_by=actor.user_id,
        expires_at=utcnow() + timedelta(hours=settings.invitation_ttl_hours),
    )
    session.add(invitation)
    audit.record_by(
        session,
        actor.principal,
        org_id=actor.org_id,
        action=audit.Action.MEMBER_INVITED,
        target_type="invitation",
        target_id=invitation.id,
        detail={"email": email, "role": invitation.role.value},
        ip=ip,
    )
    await session.flush()
    url = invite_url(settings, token)
    if not settings.smtp_host:
        return invitation, url
    await _mail(session, settings, invitation, actor, url)
    return invitation, None


async def _mail(
    session: AsyncSession, settings: Settings, invitation: Invitation, actor: Member, url: str
) -> None:
    org = await session.get(Organization, invitation.org_id)
    message = mail.invitation_message(
        settings,
        to=invitation.email,
        org_name=org.name if org else "",
        inviter=actor.principal.label,
        role=invitation.role.value,
        url=url,
        expires_at=invitation.expires_at,
    )
    await mail.send(settings, message)


async def pending_invitations(session: AsyncSession, *, org_id: uuid.UUID) -> Sequence[Invitation]:
    query = _pending(org_id).order_by(Invitation.created_at.desc(), Invitation.id.desc())
    return cast(Sequence[Invitation], (await session.scalars(query)).all())


async def revoke_invitation(
    session: AsyncSession, *, actor: Member, invitation_id: uuid.UUID, ip: str = ""
) -> None:
    """Revoke a not-yet-used invitation (audit ``invitation.revoked``); 410 if used or revoked."""
    invitation = await get_in_org(
        session, Invitation, invitation_id, actor.org_id, what="invitation"
    )
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise Gone("this invitation was already used or revoked")
    invitation.revoked_at = utcnow()
    audit.record_by(
        session,
        actor.principal,
        org_id=actor.org_id,
        action=audit.Action.INVITATION_REVOKED,
        target_type="invitation",
        target_id=invitation.id,
        detail={"email": invitation.email, "role": invitation.role.value},
        ip=ip,
    )
    await session.flush()


async def open_invitation(session: AsyncSession, *, token: str) -> tuple[Invitation, Organization]:
    """The invitation a link names and its org; 404 unknown, 410 expired, used or revoked."""
    invitation = await session.scalar(
        select(Invitation).where(Invitation.token_hash == security.sha256_hex(token))
    )
    org = await session.get(Organization, invitation.org_id) if invitation else None
    if invitation is None or org is None:
        raise NotFound("invitation not found")
    if invitation.revoked_at is not None:
        raise Gone("this invitation was revoked", reason="revoked")
    if invitation.accepted_at is not None:
        raise Gone("this invitation was already used", reason="used")
    if invitation.expires_at <= utcnow():
        raise Gone("this invitation has expired; ask for a new one", reason="expired")
    return invitation, org


async def _claim(session: AsyncSession, invitation: Invitation, user_id: uuid.UUID) -> None:
    """Mark the invitation used, unless a concurrent accept or revoke got there first."""
    now = utcnow()
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(accepted_at=now, accepted_by=user_id)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        raise Gone("this invitation was already used or revoked")
    invitation.accepted_at = now
    invitation.accepted_by = user_id


async def _join(
    session: AsyncSession, *, invitation: Invitation, user: User, ip: str
) -> Membership:
    await _claim(session, invitation, user.id)
    membership = Membership(org_id=invitation.org_id, user_id=user.id, role=invitation.role)
    session.add(membership)
    audit.record(
        session,
        org_id=invitation.org_id,
        action=audit.Action.MEMBER_JOINED,
        actor_user_id=user.id,
        actor_label=user.email,
        target_type="user",
        target_id=user.id,
        detail={"role": invitation.role.value, "invitation_id": str(invitation.id)},
        ip=ip,
    )
    await session.flush()
    return membership


async def accept_as_user(
    session: AsyncSession,
    *,
    token: str,
    user: User,
    login: LoginSession | None,
    ip: str = "",
) -> Organization:
    """A signed-in user joins; the invited org becomes their session's current org.

    Only the invited address may use the link: a forwarded link does not let
    some other account into the org.
    """
    invitation, org = await open_invitation(session, token=token)
    if normalize_email(user.email) != invitation.email:
        raise Forbidden("this invitation was sent to another email address", field="email")
    if await _is_member(session, org.id, invitation.email):
        raise Conflict("you are already a member of this organisation")
    await _join(session, invitation=invitation, user=user, ip=ip)
    if login is not None:
        login.current_org_id = org.id
    return org


async def accept_as_new_user(
    session: AsyncSession,
    *,
    token: str,
    password: str,
    display_name: str,
    ip: str = "",
) -> tuple[User, Organization, Role]:
    """Create the account for the invited email and join; 409 if that account exists."""
    invitation, org = await open_invitation(session, token=token)
    if await find_user_by_email(session, invitation.email) is not None:
        raise Conflict(
            "an account with this email already exists; sign in, then accept", field="email"
        )
    user = User(
        id=uuid.uuid4(),
        email=invitation.email,
        display_name=display_name,
        password_hash=security.hash_password(password),
    )
    session.add(user)
    await session.flush()
    membership = await _join(session, invitation=invitation, user=user, ip=ip)
    return user, org, membership.role
