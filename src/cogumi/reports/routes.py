"""Reports API: generate and download a run's report, its evidence bundle, compare, CI exports.

Generating needs ``runs.start`` (MEMBER and up: the role that triages);
reading any member. Generating and every download are audit-logged.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status
from fastapi.responses import JSONResponse

from cogumi.reports import compare as comparing
from cogumi.reports import formats, service
from cogumi.reports.models import Report
from cogumi.reports.schemas import CompareOut, ReportOut
from cogumi.runs import service as runs_service
from cogumi.runs.models import Run
from cogumi.tenancy.deps import DbSession, Reader, RunStarter

router = APIRouter(tags=["reports"])

MEDIA = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8"}


def _filename(run: Run, suffix: str) -> str:
    return f"cogumi-run-{str(run.id)[:8]}{suffix}"


def _out(run: Run, row: Report | None, state: str) -> ReportOut:
    return ReportOut(
        run_id=run.id,
        state=state,
        version=row.version if row else None,
        content_hash=row.content_hash if row else None,
        created_at=row.created_at if row else None,
    )


@router.post(
    "/runs/{run_id}/report",
    response_model=ReportOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "The run is unchanged: its stored report is returned."},
        409: {"description": "The run has not finished."},
    },
)
async def request_report(
    run_id: uuid.UUID,
    member: RunStarter,
    session: DbSession,
    request: Request,
    response: Response,
    jobs: BackgroundTasks,
) -> ReportOut:
    """Queue report generation (202), or return the report of the unchanged run (200).

    Download it with ``GET .../report?format=md|html`` once generated.
    """
    run = await runs_service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    existing = await service.request_report(session, run=run)
    if existing is not None:
        response.status_code = status.HTTP_200_OK
        return _out(run, existing, "ready")
    jobs.add_task(
        service.generate_job,
        sessionmaker=request.app.state.sessionmaker,
        org_id=member.org_id,
        run_id=run.id,
        actor=service.actor_of(member),
    )
    return _out(run, None, "queued")


@router.get(
    "/runs/{run_id}/report",
    response_class=Response,
    responses={
        200: {"content": {"text/markdown": {}, "text/html": {}}},
        404: {"description": "No report generated yet."},
    },
)
async def download_report(
    run_id: uuid.UUID,
    member: Reader,
    session: DbSession,
    format: Annotated[Literal["md", "html"], Query(description="md or html")] = "md",
) -> Response:
    """The newest report of the run (Markdown as an attachment, HTML to view or print)."""
    run = await runs_service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    row = await service.download(session, member=member, run=run, fmt=format)
    disposition = "attachment" if format == "md" else "inline"
    name = _filename(run, f"-report-v{row.version}.{format}")
    headers = {
        "Content-Disposition": f'{disposition}; filename="{name}"',
        "X-Report-Version": str(row.version),
        "X-Content-SHA256": row.content_hash,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    }
    return Response(row.content, media_type=MEDIA[format], headers=headers)


@router.get("/runs/{run_id}/bundle", response_class=JSONResponse)
async def download_bundle(run_id: uuid.UUID, member: Reader, session: DbSession) -> Response:
    """The run's evidence bundle: every event, step, finding and result with a hash manifest.

    Check it offline with ``cogumi verify-bundle FILE``.
    """
    run = await runs_service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    document = await service.bundle_of(session, run=run)
    service.record_download(
        session, member=member, run=run, what="bundle", root=document["manifest"]["root"]
    )
    name = _filename(run, "-bundle.json")
    return Response(
        json.dumps(document, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/runs/{run_id}/compare", response_model=CompareOut)
async def compare_runs(
    run_id: uuid.UUID,
    member: Reader,
    session: DbSession,
    with_: Annotated[
        uuid.UUID | None,
        Query(
            alias="with", description="Run to compare with (default: the previous completed run)."
        ),
    ] = None,
) -> CompareOut:
    """New, fixed and persisting findings by fingerprint; regressions; risk and category change."""
    run = await runs_service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    base: Run | None
    if with_ is not None:
        base = await runs_service.get_run(session=session, org_id=member.org_id, run_id=with_)
        comparing.check_pair(run, base)
    else:
        base = await comparing.previous_run(session, run=run)
    return CompareOut.model_validate(await comparing.compare(session, run=run, base=base))


@router.get("/runs/{run_id}/export", response_class=Response)
async def export_run(
    run_id: uuid.UUID,
    member: Reader,
    session: DbSession,
    format: Annotated[Literal["sarif", "junit"], Query(description="sarif or junit")] = "sarif",
) -> Response:
    """The run for CI: SARIF 2.1.0 (code-scanning alerts) or JUnit XML (test reports)."""
    run = await runs_service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    document = await service.scan_document(session, run=run)
    service.record_download(session, member=member, run=run, what="export", format=format)
    if format == "sarif":
        body, media, suffix = (
            json.dumps(formats.to_sarif(document), indent=1),
            "application/sarif+json",
            ".sarif",
        )
    else:
        body, media, suffix = formats.to_junit(document), "application/xml", "-junit.xml"
    name = _filename(run, suffix)
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
