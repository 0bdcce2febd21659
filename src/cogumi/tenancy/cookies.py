"""Login cookies and the caller's address, shared by every tenancy route module."""

from __future__ import annotations

from fastapi import Request, Response

from cogumi.config import Settings
from cogumi.tenancy import security
from cogumi.tenancy.deps import CSRF_COOKIE, SESSION_COOKIE


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def set_login_cookies(response: Response, token: str, settings: Settings) -> str:
    """Session cookie (HttpOnly, SameSite=Lax) and the readable CSRF cookie; returns the CSRF token."""
    max_age = settings.session_ttl_hours * 3600
    csrf = security.csrf_token(token, settings.resolved_secret_key())
    for name, value, httponly in ((SESSION_COOKIE, token, True), (CSRF_COOKIE, csrf, False)):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=httponly,
            samesite="lax",
            secure=settings.cookie_secure,
            path="/",
        )
    return csrf


def clear_login_cookies(response: Response, settings: Settings) -> None:
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(
            name, path="/", httponly=httponly, samesite="lax", secure=settings.cookie_secure
        )
