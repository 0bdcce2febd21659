"""Accounts and sessions. Functions add to the caller's transaction, never commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.errors import Conflict, Unauthenticated
from cogumi.tenancy import audit, security
from cogumi.tenancy.models import LoginSession, Membership, Organization, Role, User


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def create_org(
    session: AsyncSession, *, name: str, owner: User, ip: str = ""
) -> Organization:
    """A new org with ``owner`` as its OWNER, audit-logged."""
    org = Organization(id=uuid.uuid4(), name=name, created_by=owner.id)
    session.add(org)
    await session.flush()
    session.add(Membership(org_id=org.id, user_id=owner.id, role=Role.OWNER))
    audit.record(
        session,
        org_id=org.id,
        action=audit.Action.ORG_CREATED,
        actor_user_id=owner.id,
        actor_label=owner.email,
        target_type="org",
        target_id=org.id,
        detail={"name": name},
        ip=ip,
    )
    await session.flush()
    return org


async def register(
    session: AsyncSession,
    *,
    email: str,
    password: str | None,
    display_name: str = "",
    org_name: str | None = None,
    oidc_subject: str | None = None,
    ip: str = "",
) -> tuple[User, Organization]:
    """Create a user and their first org (OWNER). 409 when the email is taken."""
    email = normalize_email(email)
    if await find_user_by_email(session, email) is not None:
        raise Conflict("an account with this email already exists", field="email")
    user = User(
        id=uuid.uuid4(),
        email=email,
        display_name=display_name,
        password_hash=security.hash_password(password) if password else None,
        oidc_subject=oidc_subject,
    )
    session.add(user)
    await session.flush()
    org = await create_org(session, name=org_name or f"{email}'s org", owner=user, ip=ip)
    return user, org


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """The user with this email and password; one vague 401 for every failure."""
    user = await find_user_by_email(session, email)
    hashed = user.password_hash if user is not None else None
    if not security.verify_password(password, hashed) or user is None:
        raise Unauthenticated("wrong email or password")
    return user


async def first_org_id(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        select(Membership.org_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at, Membership.org_id)
        .limit(1)
    )


async def start_session(
    session: AsyncSession,
    *,
    user: User,
    ttl: timedelta,
    org_id: uuid.UUID | None = None,
    user_agent: str = "",
) -> str:
    """Create a server-side session; returns the raw token for the cookie (not stored)."""
    token = security.random_token()
    now = utcnow()
    user.last_login_at = now
    session.add(
        LoginSession(
            token_hash=security.sha256_hex(token),
            user_id=user.id,
            current_org_id=org_id or await first_org_id(session, user.id),
            expires_at=now + ttl,
            last_seen_at=now,
            user_agent=user_agent[:255],
        )
    )
    await session.flush()
    return token


async def end_session(session: AsyncSession, token: str) -> None:
    row = await session.scalar(
        select(LoginSession).where(LoginSession.token_hash == security.sha256_hex(token))
    )
    if row is not None:
        await session.delete(row)


async def orgs_of(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[Organization, Role]]:
    rows = await session.execute(
        select(Organization, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(func.lower(Organization.name), Organization.id)
    )
    return [(org, role) for org, role in rows.all()]
