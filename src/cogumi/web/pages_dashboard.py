"""The dashboard: posture strip, heat map, action queue, projects, recent runs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cogumi.events import service as events_service
from cogumi.tenancy.deps import DbSession
from cogumi.web import dashboard
from cogumi.web.render import PageViewer, render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def dashboard_page(request: Request, viewer: PageViewer, session: DbSession) -> HTMLResponse:
    data = await dashboard.posture(session, org_id=viewer.org_id)
    connections = {
        p.id: await events_service.connection_state(session, project=p) for p in data.projects[:50]
    }
    return render(
        request,
        "dashboard.html",
        viewer=viewer,
        data=data,
        connections=connections,
        trend=dashboard.trend_points(data.trend),
        heat_level=dashboard.heat_level,
        severities=dashboard.SEVERITIES,
    )
