"""Tenancy API: account, sessions, current user. Thin: parse, call a service, map."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cogumi.tenancy import security, service
from cogumi.tenancy.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AppSettings,
    CurrentPrincipal,
    DbSession,
)
from cogumi.tenancy.models import Role
from cogumi.tenancy.schemas import LoginIn, MeOut, OrgOut, RegisterIn, UserOut

auth_router = APIRouter(prefix="/auth", tags=["auth"])
me_router = APIRouter(tags=["auth"])


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def set_login_cookies(response: Response, token: str, settings: AppSettings) -> str:
    """Session cookie (HttpOnly, SameSite=Lax) and the readable CSRF cookie."""
    max_age = settings.session_ttl_hours * 3600
    csrf = security.csrf_token(token, settings.resolved_secret_key())
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=max_age,
        httponly=False,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )
    return csrf


async def _me(session: DbSession, principal: CurrentPrincipal, settings: AppSettings) -> MeOut:
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
    current = next((o for o in orgs if o.id == principal.org_id), None)
    csrf = (
        security.csrf_token(principal.session_token, settings.resolved_secret_key())
        if principal.session_token
        else None
    )
    return MeOut(
        user=UserOut.model_validate(principal.user), current_org=current, orgs=orgs, csrf_token=csrf
    )


@auth_router.post("/register", status_code=status.HTTP_201_CREATED, response_model=MeOut)
async def register(
    body: RegisterIn,
    request: Request,
    response: Response,
    session: DbSession,
    settings: AppSettings,
) -> MeOut:
    """Create an account and its first organisation (you become its OWNER); signs you in."""
    user, org = await service.register(
        session,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        org_name=body.org_name,
        ip=client_ip(request),
    )
    from datetime import timedelta

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


@auth_router.post("/login", response_model=MeOut)
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    session: DbSession,
    settings: AppSettings,
) -> MeOut:
    """Sign in with email and password; sets the session and CSRF cookies."""
    from datetime import timedelta

    user = await service.authenticate(session, email=body.email, password=body.password)
    token = await service.start_session(
        session,
        user=user,
        ttl=timedelta(hours=settings.session_ttl_hours),
        user_agent=request.headers.get("user-agent", ""),
    )
    csrf = set_login_cookies(response, token, settings)
    orgs = [
        OrgOut(id=o.id, name=o.name, role=r) for o, r in await service.orgs_of(session, user.id)
    ]
    return MeOut(
        user=UserOut.model_validate(user),
        current_org=orgs[0] if orgs else None,
        orgs=orgs,
        csrf_token=csrf,
    )


@me_router.get("/me", response_model=MeOut)
async def me(session: DbSession, principal: CurrentPrincipal, settings: AppSettings) -> MeOut:
    """Who you are, your current org and role, every org you belong to."""
    from cogumi.errors import Unauthenticated

    if not principal.authenticated:
        raise Unauthenticated("sign in or send an API key")
    return await _me(session, principal, settings)


routers = [auth_router, me_router]
