"""Sign-up, login and invitation pages (the forms post to the JSON auth API)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cogumi.errors import CogumiError
from cogumi.tenancy import service_invitations
from cogumi.tenancy.deps import CurrentPrincipal, DbSession
from cogumi.web.render import render

router = APIRouter()

_SAFE_NEXT = re.compile(r"^/(?!/)[A-Za-z0-9/_.\-?=&%]*$")


def safe_next(value: str | None) -> str:
    """Only same-site paths: an open redirect after login would be a phishing aid."""
    if value and _SAFE_NEXT.match(value) and "\\" not in value:
        return value.replace("{", "").replace("}", "")
    return "/"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "auth/login.html", next_url=safe_next(next))


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request) -> HTMLResponse:
    return render(request, "auth/signup.html")


@router.get("/invite/{token}", response_class=HTMLResponse)
async def invite_page(
    request: Request, token: str, session: DbSession, principal: CurrentPrincipal
) -> HTMLResponse:
    """Who invites whom to what; accepting is one button (signed in) or a password form."""
    try:
        invitation, org = await service_invitations.open_invitation(session, token=token)
    except CogumiError as exc:
        return render(
            request, "auth/invite.html", invitation=None, problem=exc.message,
            status=exc.status_code,
        )  # fmt: skip
    signed_in_as = principal.user.email if principal.user is not None else None
    return render(
        request,
        "auth/invite.html",
        invitation=invitation,
        org_name=org.name,
        token=token,
        signed_in_as=signed_in_as,
        problem=None,
    )
