"""Reports and exports of a run: gather the facts once, render, version, audit.

Report generation is a job: the request that asks for it only checks the run
and answers; :func:`generate_job` then renders in its own transaction once
the request has committed. Versions follow the run's *state digest* (status,
risk score, results, findings with their triage): an unchanged run keeps its
report, new triage on a finished run makes the next version.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.db.scope import in_org
from cogumi.errors import Conflict, NotFound
from cogumi.events.models import Event
from cogumi.events.schemas import EventOut
from cogumi.findings.schemas import FindingOut
from cogumi.findings.service import list_findings
from cogumi.reports import bundle as bundles
from cogumi.reports import compare as comparing
from cogumi.reports import html, markdown
from cogumi.reports.compliance import Compliance, score_run
from cogumi.reports.data import ReportData
from cogumi.reports.formats import clean
from cogumi.reports.models import Report
from cogumi.runs import service as runs_service
from cogumi.runs.models import TERMINAL_STATUSES, Run
from cogumi.runs.schemas import RunOut, ScriptResultOut, StoryStepOut
from cogumi.tenancy.audit import Action, record, record_by
from cogumi.tenancy.deps import Member

Json = dict[str, Any]


# --- facts -------------------------------------------------------------------


async def _results(session: AsyncSession, run: Run) -> list[Json]:
    rows = await runs_service.list_results(session=session, run=run)
    return [ScriptResultOut.model_validate(r).model_dump(mode="json") for r in rows]


async def _findings(session: AsyncSession, run: Run) -> list[Json]:
    rows = await list_findings(session=session, run=run)
    return [FindingOut.from_row(r).model_dump(mode="json") for r in rows]


async def _events(session: AsyncSession, run: Run, ids: list[str] | None = None) -> list[Json]:
    query = in_org(Event, run.org_id).where(Event.run_id == run.id)
    if ids is not None:
        query = query.where(Event.id.in_([uuid.UUID(i) for i in ids if _is_uuid(i)]))
    rows = (await session.scalars(query.order_by(Event.seq, Event.id))).all()
    return [EventOut.from_row(r).model_dump(mode="json") for r in rows]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def run_json(run: Run) -> Json:
    return RunOut.model_validate(run).model_dump(mode="json")


def state_digest(run: Json, results: list[Json], findings: list[Json]) -> str:
    """What a report depends on; equal digests render equal reports."""
    state = {
        "run": {k: run.get(k) for k in ("status", "risk_score", "ended_at", "failure_reason")},
        "results": results,
        "findings": findings,
    }
    return hashlib.sha256(bundles.canonical_json(state)).hexdigest()


async def technique_owasp(session: AsyncSession, *, org_id: uuid.UUID) -> dict[str, list[str]]:
    """OWASP LLM ids of every technique the org can run (built-in and custom)."""
    from cogumi.engine.custom import org_library

    library = await org_library(session, org_id=org_id)
    return {t.id: list(t.owasp_llm) for t in library.techniques.values()}


# --- evidence bundle ---------------------------------------------------------


async def bundle_of(session: AsyncSession, *, run: Run) -> Json:
    """The run's evidence bundle (see :mod:`cogumi.reports.bundle`)."""
    data = run_json(run)
    config = data.pop("config")
    story = await runs_service.list_story(session=session, run=run)
    return bundles.build(
        run=data,
        config=config,
        events=await _events(session, run),
        story_steps=[StoryStepOut.model_validate(s).model_dump(mode="json") for s in story],
        findings=await _findings(session, run),
        script_results=await _results(session, run),
        generated_at=utcnow().isoformat(),
    )


# --- report ------------------------------------------------------------------


def _mark_changes(findings: list[Json], comparison: Json | None) -> list[Json]:
    if comparison is None:
        return findings
    change = {i["fingerprint"]: k for k in ("new", "persisting") for i in comparison[k]}
    back = set(comparison["regressions"])
    return [
        {**f, "change": change.get(f["fingerprint"]), "regression": f["fingerprint"] in back}
        for f in findings
    ]


async def report_data(session: AsyncSession, *, run: Run, version: int) -> ReportData:
    """Everything the report says, gathered in one transaction."""
    results, findings = await _results(session, run), await _findings(session, run)
    cited = [s["event_id"] for f in findings for s in f["narrative_steps"]]
    events = {e["id"]: e for e in await _events(session, run, cited)}
    base = await comparing.previous_run(session, run=run)
    comparison = await comparing.compare(session, run=run, base=base)
    owasp = await technique_owasp(session, org_id=run.org_id)
    compliance: Compliance = score_run(results=results, findings=findings, technique_owasp=owasp)
    count = await session.scalar(
        select(func.count()).select_from(Event).where(Event.run_id == run.id)
    )
    project = (run.config or {}).get("project") or {}
    return ReportData(
        run=run_json(run),
        project={
            "id": str(run.project_id),
            "name": clean(project.get("name") or "project"),
            "environment": project.get("environment") or "sandbox",
        },
        results=results,
        findings=_mark_changes(findings, comparison),
        events=events,
        event_count=int(count or 0),
        compliance=compliance,
        bundle_root=(await bundle_of(session, run=run))["manifest"]["root"],
        version=version,
        generated_at=utcnow().isoformat(timespec="seconds"),
        comparison=comparison,
    )


async def latest_report(
    session: AsyncSession, *, run: Run, fmt: str = "md", digest: str | None = None
) -> Report | None:
    query = in_org(Report, run.org_id).where(Report.run_id == run.id, Report.format == fmt)
    if digest is not None:
        query = query.where(Report.state_digest == digest)
    found: Report | None = await session.scalar(query.order_by(Report.version.desc()).limit(1))
    return found


async def current_digest(session: AsyncSession, *, run: Run) -> str:
    return state_digest(run_json(run), await _results(session, run), await _findings(session, run))


async def request_report(session: AsyncSession, *, run: Run) -> Report | None:
    """The stored report for the run as it is now, or None when one must be generated.

    409 for a run that has not ended: its report would be out of date at once.
    """
    if run.status not in TERMINAL_STATUSES:
        raise Conflict(
            "the run has not finished yet; generate its report once it has ended",
            reason="run_not_finished",
        )
    digest = await current_digest(session, run=run)
    return await latest_report(session, run=run, digest=digest)


async def _next_version(session: AsyncSession, run: Run) -> int:
    query = select(func.max(Report.version)).where(Report.run_id == run.id)
    return int(await session.scalar(query) or 0) + 1


async def generate(
    session: AsyncSession, *, run: Run, actor: dict[str, Any]
) -> tuple[Report, bool]:
    """Render and store both formats unless the run's current state already has a report.

    Returns the Markdown row and whether it was created now.
    """
    digest = await current_digest(session, run=run)
    existing = await latest_report(session, run=run, digest=digest)
    if existing is not None:
        return existing, False
    version = await _next_version(session, run)
    data = await report_data(session, run=run, version=version)
    text = markdown.render(data)
    page = html.render(text, title=f"Red-team report: {data.project['name']}")
    rows = [
        _row(run, version, "md", text, digest, actor),
        _row(run, version, "html", page, digest, actor),
    ]
    session.add_all(rows)
    await session.flush()
    record(
        session,
        org_id=run.org_id,
        action=Action.REPORT_GENERATED,
        target_type="run",
        target_id=run.id,
        detail={"version": version, "state_digest": digest, "content_hash": rows[0].content_hash},
        **actor,
    )
    return rows[0], True


def _row(
    run: Run, version: int, fmt: str, content: str, digest: str, actor: dict[str, Any]
) -> Report:
    return Report(
        org_id=run.org_id,
        run_id=run.id,
        version=version,
        format=fmt,
        content=content,
        content_hash=hashlib.sha256(content.encode()).hexdigest(),
        state_digest=digest,
        created_by=actor.get("actor_user_id"),
    )


def actor_of(member: Member) -> dict[str, Any]:
    """Who asked, in the audit writer's terms (carried into the job)."""
    principal = member.principal
    return {
        "actor_user_id": principal.user_id,
        "actor_api_key_id": principal.api_key_id,
        "actor_label": principal.label,
    }


async def generate_job(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: uuid.UUID,
    run_id: uuid.UUID,
    actor: dict[str, Any],
) -> None:
    """The report job: one transaction; a concurrent twin that wins the version is fine."""
    try:
        async with transaction(sessionmaker) as session:
            run = await runs_service.get_run(session=session, org_id=org_id, run_id=run_id)
            await generate(session, run=run, actor=actor)
    except (IntegrityError, NotFound):
        return  # another job stored this version first, or the run was deleted meanwhile


def record_download(
    session: AsyncSession, *, member: Member, run: Run, what: str, **detail: Any
) -> None:
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.REPORT_DOWNLOADED,
        target_type="run",
        target_id=run.id,
        detail={"what": what, **detail},
    )


async def download(session: AsyncSession, *, member: Member, run: Run, fmt: str) -> Report:
    """The newest report of the run in ``fmt``; 404 until one has been generated."""
    row = await latest_report(session, run=run, fmt=fmt)
    if row is None:
        raise NotFound("this run has no report yet; ask for one with POST .../report")
    record_download(session, member=member, run=run, what="report", format=fmt, version=row.version)
    return row


# --- CI exports --------------------------------------------------------------


async def scan_document(session: AsyncSession, *, run: Run) -> Json:
    """The run in the ``cogumi scan --format json`` shape (plus each finding's summary)."""
    data = run_json(run)
    keys = ("script_id", "technique_id", "result", "score", "severity", "confidence", "summary")
    results = [{k: r[k] for k in keys} for r in await _results(session, run)]
    findings = [
        {
            **{
                k: f[k]
                for k in (
                    "script_id",
                    "technique_id",
                    "category",
                    "title",
                    "severity",
                    "status",
                    "score",
                    "confidence",
                    "fingerprint",
                    "summary",
                )
            },
            "owasp": [*(f["owasp"].get("llm") or []), *(f["owasp"].get("agentic") or [])],
            "evidence": f["narrative_steps"],
        }
        for f in await _findings(session, run)
    ]
    run_part = {k: data[k] for k in ("id", "status", "risk_score", "started_at", "ended_at")}
    return {"run": run_part, "script_results": results, "findings": findings}
