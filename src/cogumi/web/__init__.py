"""Server-rendered web UI: page routes, Jinja2 templates, static CSS/JS.

Pages read through the area services on the server; writes go through the
JSON API from small hand-written scripts (fetch + CSRF header), so the UI has
exactly the permissions and validation of the API and nothing more.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from cogumi.web.render import LoginRequired, PageError, render

STATIC_DIR = Path(__file__).parent / "static"


def page_routers() -> list[APIRouter]:
    """Every page router, in one explicit list (mounted at the root, outside /api)."""
    from cogumi.web import pages_auth, pages_dashboard, pages_org, pages_projects, pages_runs

    return [
        pages_auth.router,
        pages_dashboard.router,
        pages_projects.router,
        pages_runs.router,
        pages_org.router,
    ]


async def _to_login(request: Request, exc: Exception) -> RedirectResponse:
    """Anonymous visitors of a page land on the login form, coming back afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def _error_page(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, PageError)
    return render(request, "error.html", status=exc.status, message=exc.message, code=exc.status)


def mount_web(app: FastAPI) -> None:
    """Static files under ``/static`` and every page route; called once by ``create_app``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in page_routers():
        app.include_router(router, include_in_schema=False)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(PageError, _error_page)
