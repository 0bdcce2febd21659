"""Request dependencies: DB session, settings, the authenticated principal.

A request is authenticated by exactly one of: ``Authorization: Bearer cgk_…``
(an org API key) or the ``cogumi_session`` cookie. Cookie-authenticated writes
must also send ``X-CSRF-Token`` equal to the ``cogumi_csrf`` cookie, which is
an HMAC of the session token. Routes ask for a :class:`Permission`; the
principal's role in its current org decides.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.errors import Forbidden, Unauthenticated
from cogumi.tenancy import security
from cogumi.tenancy.models import ApiKey, LoginSession, Membership, Role, User
from cogumi.tenancy.permissions import Permission, allows

SESSION_COOKIE = "cogumi_session"
CSRF_COOKIE = "cogumi_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOUCH_EVERY = timedelta(minutes=5)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, else rolled back.

    Every request takes SQLite's write lock up front (see ``db.engine.WRITE``):
    GETs write too (session and key last-seen times, audit rows for downloads,
    the OIDC callback), and a read transaction that later writes can fail at
    once on SQLite instead of waiting. In WAL mode plain readers are not blocked
    by it; PostgreSQL ignores the option.
    """
    async with transaction(request.app.state.sessionmaker, write=True) as session:
        yield session


async def finish_transaction(session: AsyncSession) -> None:
    """Commit the request's transaction early, before slow outbound work.

    After this the handler must not touch ``session`` again. Used where a
    request calls out (endpoint validation): holding a transaction, and on
    SQLite the write lock, for seconds of someone else's latency would stall
    every other writer.
    """
    await session.commit()


AppSettings = Annotated[Settings, Depends(get_settings)]
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user by session, an API key, or nobody."""

    user: User | None = None
    session: LoginSession | None = None
    session_token: str | None = None
    api_key: ApiKey | None = None
    org_id: uuid.UUID | None = None
    role: Role | None = None

    @property
    def authenticated(self) -> bool:
        return self.user is not None or self.api_key is not None

    @property
    def label(self) -> str:
        if self.api_key is not None:
            return f"api-key:{self.api_key.prefix}"
        return self.user.email if self.user is not None else "anonymous"

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.user.id if self.user is not None else None

    @property
    def api_key_id(self) -> uuid.UUID | None:
        return self.api_key.id if self.api_key is not None else None


@dataclass(frozen=True)
class Member:
    """A principal acting inside one org with a role (what tenant routes receive)."""

    principal: Principal
    org_id: uuid.UUID
    role: Role

    @property
    def user(self) -> User | None:
        return self.principal.user

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if header:
        raise Unauthenticated("Authorization header must be 'Bearer <api key>'")
    return None


async def _from_api_key(session: AsyncSession, token: str) -> Principal:
    prefix = security.split_prefixed_token(token, "cgk")
    key = None
    if prefix is not None:
        key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not security.token_matches(token, key.key_hash):
        raise Unauthenticated("invalid API key")
    if key.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        key.last_used_at = now
    return Principal(api_key=key, org_id=key.org_id, role=key.role)


async def _role_in(session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID) -> Role | None:
    return await session.scalar(
        select(Membership.role).where(Membership.user_id == user_id, Membership.org_id == org_id)
    )


async def _from_cookie(session: AsyncSession, token: str) -> Principal | None:
    row = await session.scalar(
        select(LoginSession).where(LoginSession.token_hash == security.sha256_hex(token))
    )
    now = utcnow()
    if row is None or row.expires_at <= now:
        return None
    user = await session.get(User, row.user_id)
    if user is None:
        return None
    if row.last_seen_at is None or now - row.last_seen_at > _TOUCH_EVERY:
        row.last_seen_at = now
    role = await _role_in(session, user.id, row.current_org_id) if row.current_org_id else None
    org_id = row.current_org_id if role is not None else None
    return Principal(user=user, session=row, session_token=token, org_id=org_id, role=role)


def _check_csrf(request: Request, principal: Principal, settings: Settings) -> None:
    if request.method in SAFE_METHODS or principal.session_token is None:
        return
    expected = security.csrf_token(principal.session_token, settings.resolved_secret_key())
    sent = request.headers.get(CSRF_HEADER, "")
    import hmac

    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden(
            f"missing or wrong {CSRF_HEADER} header (copy it from the {CSRF_COOKIE} cookie)",
            reason="csrf",
        )


async def get_principal(request: Request, session: DbSession, settings: AppSettings) -> Principal:
    """Resolve the caller; anonymous when no credential is sent (never an error here)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    if token is not None:
        principal = await _from_api_key(session, token)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        principal = (await _from_cookie(session, cookie) if cookie else None) or Principal()
        _check_csrf(request, principal, settings)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def require_user(principal: CurrentPrincipal) -> Principal:
    """A signed-in person (not an API key): account and org-membership routes."""
    if principal.user is None:
        if principal.api_key is not None:
            raise Forbidden("this action needs a signed-in user, not an API key")
        raise Unauthenticated("sign in first")
    return principal


CurrentUser = Annotated[Principal, Depends(require_user)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Member]]:
    """Dependency factory: the caller's current org membership, if its role allows ``permission``."""

    async def dependency(principal: CurrentPrincipal) -> Member:
        if not principal.authenticated:
            raise Unauthenticated("sign in or send an API key")
        if principal.org_id is None or principal.role is None:
            raise Forbidden("no current organisation; create or switch to one first")
        if not allows(principal.role, permission):
            raise Forbidden(
                f"role {principal.role.value} may not do this ({permission.value})",
                permission=permission.value,
            )
        return Member(principal=principal, org_id=principal.org_id, role=principal.role)

    return dependency


Reader = Annotated[Member, Depends(require(Permission.READ))]
OrgManager = Annotated[Member, Depends(require(Permission.ORG_MANAGE))]
MembersManager = Annotated[Member, Depends(require(Permission.MEMBERS_MANAGE))]
TokensManager = Annotated[Member, Depends(require(Permission.TOKENS_MANAGE))]
ProjectWriter = Annotated[Member, Depends(require(Permission.PROJECTS_WRITE))]
RunStarter = Annotated[Member, Depends(require(Permission.RUNS_START))]
Triager = Annotated[Member, Depends(require(Permission.FINDINGS_TRIAGE))]
AuditReader = Annotated[Member, Depends(require(Permission.AUDIT_READ))]
