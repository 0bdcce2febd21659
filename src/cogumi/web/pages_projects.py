"""Project pages: list, create, overview, the five-step connect wizard, settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cogumi.events import service as events_service
from cogumi.projects import canaries, service, snippets
from cogumi.projects.models import Project
from cogumi.projects.schemas import ATTACK_STYLES, BUILTIN_SCRIPTS
from cogumi.quotas.project_usage import project_usage
from cogumi.runs import service as runs_service
from cogumi.tenancy.deps import AppSettings, DbSession
from cogumi.web import dashboard
from cogumi.web.render import PageError, PageViewer, Viewer, or_page_error, parse_id, render

router = APIRouter()

WIZARD_STEPS = ("Token", "Deploy sidecar", "Verify", "Agent endpoint", "First campaign")
SNIPPET_ORDER = ("docker_compose", "kubernetes", "env", "sidecar_yaml", "fastapi", "express")


async def _project(session: DbSession, viewer: Viewer, project_id: str) -> Project:
    pid = parse_id(project_id, "project")
    return await or_page_error(
        service.get_project(session=session, org_id=viewer.org_id, project_id=pid)
    )


def guardrail(project: Project) -> dict[str, Any]:
    """What the start-run control shows: allowed, and the warning or block reason."""
    env = project.environment.value
    if env == "prod" and not project.prod_override_enabled:
        return {"allowed": False, "level": "block", "text": (
            "Production project: campaigns are blocked until the prod override is turned on "
            "in settings (three confirmations, audit-logged).")}  # fmt: skip
    if env == "prod":
        return {"allowed": True, "level": "danger", "text": (
            "Prod override is ON: adversarial prompts will reach this environment.")}  # fmt: skip
    if env == "staging":
        return {"allowed": True, "level": "warning", "text": (
            "Staging: make sure no real customer data or secrets are reachable by the agent.")}  # fmt: skip
    return {"allowed": True, "level": "ok", "text": ""}


@router.get("/projects", response_class=HTMLResponse)
async def projects_page(request: Request, viewer: PageViewer, session: DbSession) -> HTMLResponse:
    projects = await service.list_projects(session=session, org_id=viewer.org_id)
    last_runs = await dashboard.last_run_per_project(session, org_id=viewer.org_id)
    return render(
        request, "projects/list.html", viewer=viewer, projects=projects, last_runs=last_runs
    )


@router.get("/projects/new", response_class=HTMLResponse)
async def new_project_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    if not viewer.can("projects.write"):
        raise PageError(403, f"role {viewer.role.value} may not create projects")
    return render(request, "projects/new.html", viewer=viewer)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
async def project_page(
    request: Request, project_id: str, viewer: PageViewer, session: DbSession
) -> HTMLResponse:
    project = await _project(session, viewer, project_id)
    runs, _ = await runs_service.list_runs(session=session, project=project, limit=25, cursor=None)
    return render(
        request,
        "projects/overview.html",
        viewer=viewer,
        project=project,
        runs=runs,
        guard=guardrail(project),
        connection=await events_service.connection_state(session, project=project),
        canaries=await canaries.active_canaries(
            session, project_id=project.id, org_id=viewer.org_id
        ),
        tokens=await service.list_sidecar_tokens(session=session, project=project),
    )


@router.get("/projects/{project_id}/connect", response_class=HTMLResponse)
async def wizard_page(
    request: Request,
    project_id: str,
    viewer: PageViewer,
    session: DbSession,
    settings: AppSettings,
    step: int = 1,
) -> HTMLResponse:
    project = await _project(session, viewer, project_id)
    step = min(max(step, 1), len(WIZARD_STEPS))
    all_snippets = snippets.connect_snippets(project, settings)
    tokens = await service.list_sidecar_tokens(session=session, project=project)
    return render(
        request,
        "projects/wizard.html",
        viewer=viewer,
        project=project,
        step=step,
        steps=WIZARD_STEPS,
        snippets=[(k, all_snippets[k]) for k in SNIPPET_ORDER if k in all_snippets],
        active_tokens=[t for t in tokens if t.status.value == "active"],
        connection=await events_service.connection_state(session, project=project),
        guard=guardrail(project),
    )


@router.get("/projects/{project_id}/settings", response_class=HTMLResponse)
async def settings_page(
    request: Request,
    project_id: str,
    viewer: PageViewer,
    session: DbSession,
    settings: AppSettings,
) -> HTMLResponse:
    project = await _project(session, viewer, project_id)
    return render(
        request,
        "projects/settings.html",
        viewer=viewer,
        project=project,
        tokens=await service.list_sidecar_tokens(session=session, project=project),
        styles=ATTACK_STYLES,
        builtin_scripts=BUILTIN_SCRIPTS,
        redteam={
            "styles": list(ATTACK_STYLES),
            "intensity": "med",
            "scripts": list(BUILTIN_SCRIPTS),
            **(project.redteam or {}),
        },
        lines="\n".join,
        usage=await project_usage(session, project=project, settings=settings),
    )
