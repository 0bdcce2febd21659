"""Template rendering and the page-side view of who is signed in.

Autoescape is on for every template: agent and attacker text is hostile, and
the only way it reaches a page is as escaped text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cogumi.errors import CogumiError
from cogumi.tenancy import service as tenancy_service
from cogumi.tenancy.deps import CurrentPrincipal, DbSession
from cogumi.tenancy.models import Role
from cogumi.tenancy.permissions import Permission, allows

TEMPLATES_DIR = Path(__file__).parent / "templates"
T = TypeVar("T")


class LoginRequired(Exception):
    """Raised by page dependencies for anonymous visitors (answered with a redirect)."""


class PageError(Exception):
    """A page that cannot be shown (missing, another org's, not allowed): an HTML error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_id(value: str, what: str) -> uuid.UUID:
    """Malformed ids in a page URL are simply 'not found' (no JSON 422 on a page)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise PageError(404, f"{what} not found") from None


async def or_page_error(awaitable: Awaitable[T]) -> T:
    """Turn a service error (404 for another org's row, 403...) into an HTML error page."""
    try:
        return await awaitable
    except CogumiError as exc:
        raise PageError(exc.status_code, exc.message) from exc


def ago(value: datetime | None) -> str:
    """'3 min ago' style, for tables where exact time matters less than recency."""
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now" if seconds < 10 else f"{seconds} s ago"


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def label(value: object) -> str:
    """Enum and snake_case values as words: ``stopped_quota`` -> ``stopped quota``."""
    text = getattr(value, "value", value)
    return str(text or "").replace("_", " ")


def plain(value: object) -> str:
    """Audit details as words: lists joined, mappings as key=value; never markup."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    return str(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, when=when, label=label, plain=plain)
    return env


ENV = _environment()


@dataclass(frozen=True)
class Viewer:
    """The signed-in person as a page sees them: who, which org, what they may do."""

    user_id: uuid.UUID
    email: str
    display_name: str
    org_id: uuid.UUID
    org_name: str
    role: Role
    orgs: list[tuple[uuid.UUID, str, Role]] = field(default_factory=list)

    def can(self, permission: str) -> bool:
        return allows(self.role, Permission(permission))


async def current_viewer(principal: CurrentPrincipal, session: DbSession) -> Viewer:
    """The page's viewer; anonymous visitors and API keys are sent to the login page."""
    user = principal.user
    if user is None or principal.org_id is None or principal.role is None:
        raise LoginRequired
    orgs = await tenancy_service.orgs_of(session, user.id)
    names = {org.id: org.name for org, _ in orgs}
    return Viewer(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name or user.email,
        org_id=principal.org_id,
        org_name=names.get(principal.org_id, ""),
        role=principal.role,
        orgs=[(org.id, org.name, role) for org, role in orgs],
    )


PageViewer = Annotated[Viewer, Depends(current_viewer)]


def render(
    request: Request, template: str, *, viewer: Viewer | None = None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    """Render ``template`` with the viewer and a server-time figure (kept visible for budgets)."""
    started = getattr(request.state, "page_started", None) or time.perf_counter()
    html = ENV.get_template(template).render(viewer=viewer, request_path=request.url.path, **ctx)
    response = HTMLResponse(html, status_code=status)
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.headers["Server-Timing"] = f"render;dur={elapsed_ms:.1f}"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CSP
    return response


# Only our own scripts and styles run; inline script/handlers are refused by the
# browser, a second wall behind escaping against injected markup.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
