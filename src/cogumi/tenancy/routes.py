"""Tenancy API: account, sessions, current user. Thin: parse, call a service, map.

The other tenancy routers (orgs and members, invitations, API keys, audit)
live beside this module and are listed once in :data:`routers` at the bottom.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response, status

from cogumi.errors import Unauthenticated
from cogumi.tenancy import routes_audit, routes_invitations, routes_keys, routes_orgs, service
from cogumi.tenancy.cookies import clear_login_cookies, client_ip, set_login_cookies
from cogumi.tenancy.deps import AppSettings, CurrentPrincipal, DbSession
from cogumi.tenancy.models import Role
from cogumi.tenancy.ratelimit import RateLimiter, check_auth_attempt
from cogumi.tenancy.routes_orgs import me_out
from cogumi.tenancy.schemas import LoginIn, MeOut, OrgOut, RegisterIn, UserOut

__all__ = ["client_ip", "me_out", "routers", "set_login_cookies"]

auth_router = APIRouter(prefix="/auth", tags=["auth"])
me_router = APIRouter(tags=["auth"])

_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many attempts from this address or for this email."}
}


async def _limit(request: Request, settings: AppSettings, email: str) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    await check_auth_attempt(limiter, settings, ip=client_ip(request), email=email)


@auth_router.post(
    "/register", status_code=status.HTTP_201_CREATED, response_model=MeOut, responses=_RATE_LIMITED
)
async def register(
    body: RegisterIn,
    request: Request,
    response: Response,
    session: DbSession,
    settings: AppSettings,
) -> MeOut:
    """Create an account and its first organisation (you become its OWNER); signs you in."""
    await _limit(request, settings, body.email)
    user, org = await service.register(
        session,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        org_name=body.org_name,
        ip=client_ip(request),
    )
    token = await service.start_session(
        session,
        user=user,
        ttl=timedelta(hours=settings.session_ttl_hours),
        org_id=org.id,
        user_agent=request.headers.get("user-agent", ""),
    )
    csrf = set_login_cookies(response, token, settings)
    return MeOut(
        user=UserOut.model_validate(user),
        current_org=OrgOut(id=org.id, name=org.name, role=Role.OWNER),
        orgs=[OrgOut(id=org.id, name=org.name, role=Role.OWNER)],
        csrf_token=csrf,
    )


@auth_router.post("/login", response_model=MeOut, responses=_RATE_LIMITED)
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    session: DbSession,
    settings: AppSettings,
) -> MeOut:
    """Sign in with email and password; sets the session and CSRF cookies."""
    await _limit(request, settings, body.email)
    user = await service.authenticate(session, email=body.email, password=body.password)
    current_id = await service.first_org_id(session, user.id)
    token = await service.start_session(
        session,
        user=user,
        ttl=timedelta(hours=settings.session_ttl_hours),
        org_id=current_id,
        user_agent=request.headers.get("user-agent", ""),
    )
    csrf = set_login_cookies(response, token, settings)
    orgs = [
        OrgOut(id=o.id, name=o.name, role=r) for o, r in await service.orgs_of(session, user.id)
    ]
    return MeOut(
        user=UserOut.model_validate(user),
        current_org=next((o for o in orgs if o.id == current_id), None),
        orgs=orgs,
        csrf_token=csrf,
    )


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    response: Response, session: DbSession, principal: CurrentPrincipal, settings: AppSettings
) -> None:
    """End this browser session: the server-side session is deleted and both cookies cleared.

    Safe to call when already signed out. API keys have no session; revoke the key instead.
    """
    if principal.session_token is not None:
        await service.end_session(session, principal.session_token)
    clear_login_cookies(response, settings)


@me_router.get("/me", response_model=MeOut)
async def me(session: DbSession, principal: CurrentPrincipal, settings: AppSettings) -> MeOut:
    """Who you are, your current org and role, every org you belong to."""
    if not principal.authenticated:
        raise Unauthenticated("sign in or send an API key")
    return await me_out(session, principal, settings)


routers = [
    auth_router,
    me_router,
    routes_orgs.orgs_router,
    routes_orgs.members_router,
    routes_invitations.router,
    routes_keys.router,
    routes_audit.router,
]
