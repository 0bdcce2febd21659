"""The run page: header, exploit feed, timeline, evidence tabs, proof drawer.

The server renders the header and embeds the run's story, findings and
script results as a JSON data block (inert: ``tojson`` escapes ``<``, and the
CSP allows no inline script). Events, which can number thousands, are paged
in by the browser from the events API, and live updates arrive over SSE.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.engine.library.loader import load_builtin
from cogumi.findings import service as findings_service
from cogumi.findings.schemas import FindingOut
from cogumi.projects import service as projects_service
from cogumi.reports.models import Report
from cogumi.runs import service as runs_service
from cogumi.runs.models import TERMINAL_STATUSES, Run
from cogumi.runs.schemas import RunOut, ScriptResultOut, StoryStepOut
from cogumi.tenancy.deps import DbSession
from cogumi.web.render import PageViewer, or_page_error, parse_id, render

router = APIRouter()

REPORT_PATH = "/api/runs/{run_id}/report"


def report_available() -> bool:
    """The report button shows only once the reports feature serves its route."""
    from cogumi.app import api_route_table

    return ("GET", REPORT_PATH) in api_route_table()


async def report_version(session: AsyncSession, run: Run) -> int | None:
    """The newest report version of the run (its content is not loaded), or None."""
    query = select(func.max(Report.version)).where(
        Report.org_id == run.org_id, Report.run_id == run.id, Report.format == "html"
    )
    version: int | None = await session.scalar(query)
    return version


def script_titles() -> dict[str, str]:
    return {sid: script.title for sid, script in load_builtin().scripts.items()}


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request, run_id: str, viewer: PageViewer, session: DbSession
) -> HTMLResponse:
    rid = parse_id(run_id, "run")
    run = await or_page_error(
        runs_service.get_run(session=session, org_id=viewer.org_id, run_id=rid)
    )
    project = await projects_service.get_project(
        session=session, org_id=viewer.org_id, project_id=run.project_id
    )
    story = await runs_service.list_story(session=session, run=run)
    findings = await findings_service.list_findings(session=session, run=run)
    results = await runs_service.list_results(session=session, run=run)
    snap = (run.config or {}).get("project") or {}
    has_reports = report_available()
    version = await report_version(session, run) if has_reports else None
    can_report = has_reports and viewer.can("runs.start")  # the role the report API asks for
    data: dict[str, Any] = {
        "run": RunOut.model_validate(run).model_dump(mode="json"),
        "story": [StoryStepOut.model_validate(s).model_dump(mode="json") for s in story],
        "findings": [FindingOut.from_row(f).model_dump(mode="json") for f in findings],
        "results": [ScriptResultOut.model_validate(r).model_dump(mode="json") for r in results],
        "scripts": script_titles(),
        "terminal": [s.value for s in TERMINAL_STATUSES],
        "can_triage": viewer.can("findings.triage"),
        "can_start": viewer.can("runs.start"),
        "can_report": can_report,
        "report": {"version": version} if version else None,
    }
    return render(
        request,
        "run.html",
        viewer=viewer,
        run=run,
        project=project,
        environment=snap.get("environment", project.environment.value),
        override_on=bool(snap.get("prod_override_enabled", project.prod_override_enabled)),
        page_data=data,
        report_version=version,
        can_report=can_report,
        active=run.status not in TERMINAL_STATUSES,
    )
