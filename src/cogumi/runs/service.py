"""Run lifecycle: create (guardrails, one active run per project, config snapshot),
read, cancel, finish, and the writers the campaign engine calls for results and story.

Services never commit: the request or the job owns the transaction, so a
status change, its audit row and its live-stream message land together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.errors import Conflict, InvalidInput
from cogumi.events import stream
from cogumi.events.bus import LiveBus
from cogumi.projects import service as projects_service
from cogumi.projects.models import Project
from cogumi.runs.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Run,
    RunStatus,
    ScriptResult,
    ScriptResultValue,
    Severity,
    StepKind,
    StoryStep,
)
from cogumi.runs.pagination import decode_cursor, encode_cursor
from cogumi.runs.queue import RunQueue, enqueue_after_commit
from cogumi.runs.schemas import RunCreate
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import Member
from cogumi.webhooks import service as webhooks_service

BUILTIN_SCRIPT_IDS: tuple[str, ...] = (
    *(f"S{i}" for i in range(1, 6)),
    *(f"P{i:02d}" for i in range(1, 17)),
)
log = logging.getLogger(__name__)
STAGING_WARNING = (
    "this project is marked {env}: adversarial prompts may trigger unsafe behaviour there"
)


# --- creating a run ----------------------------------------------------------


_library_ids: frozenset[str] | None = None


def known_script_ids() -> frozenset[str]:
    """Built-in script ids: the attack library's (loaded once) plus the documented floor."""
    global _library_ids
    if _library_ids is None:
        try:
            from cogumi.engine.library.loader import load_builtin

            _library_ids = frozenset(load_builtin().scripts)
        except Exception as exc:  # a missing or broken library must not block starting runs
            log.warning("attack library unavailable, using the built-in script ids: %s", exc)
            return frozenset(BUILTIN_SCRIPT_IDS)
    return frozenset(BUILTIN_SCRIPT_IDS) | _library_ids


async def custom_script_ids(session: AsyncSession, *, org_id: uuid.UUID) -> frozenset[str]:
    """Ids of the org's own scripts (custom libraries), empty when none are stored."""
    from cogumi.engine.custom import libraries_of

    return frozenset(
        i for row in await libraries_of(session, org_id=org_id) for i in row.script_ids
    )


async def check_scripts(
    session: AsyncSession, *, org_id: uuid.UUID, scripts: Sequence[str], from_project: bool
) -> list[str]:
    """The scripts, deduplicated in order; 422 naming ``scripts`` for an unknown id."""
    unknown = [s for s in scripts if s not in known_script_ids()]
    if unknown:
        custom = await custom_script_ids(session, org_id=org_id)
        unknown = [s for s in unknown if s not in custom]
    if unknown:
        where = "the project's red-team config names" if from_project else "unknown"
        raise InvalidInput(
            "scripts",
            f"{where} script id(s) {', '.join(unknown)}; "
            "known: S1..S5, P01..P16 and your organisation's custom scripts",
        )
    return list(dict.fromkeys(scripts))


def snapshot(
    project: Project, body: RunCreate, *, scripts: list[str], cap_sec: int
) -> dict[str, Any]:
    """What this run will use, frozen now: later project edits never change a run."""
    redteam = project.redteam or {}
    return {
        "scripts": scripts,
        "intensity": body.intensity or redteam.get("intensity") or "med",
        "styles": list(body.styles or redteam.get("styles") or []),
        "duration_cap_sec": cap_sec,
        "project": {
            "id": str(project.id),
            "name": project.name,
            "environment": project.environment.value,
            "prod_override_enabled": project.prod_override_enabled,
            "agent_test_url": project.agent_test_url,
            "adapter": dict(project.adapter or {}),
            "tool_domains": list(project.tool_domains),
            "internal_suffixes": list(project.internal_suffixes),
            "sensitive_paths": list(project.sensitive_paths),
            "sink_domains": list(project.sink_domains),
        },
    }


async def active_run(session: AsyncSession, *, project_id: uuid.UUID) -> Run | None:
    query = select(Run).where(Run.project_id == project_id, Run.status.in_(ACTIVE_STATUSES))
    return await session.scalar(query.limit(1))


def _busy(run: Run) -> Conflict:
    return Conflict(
        f"this project already has an active run ({run.status.value}); "
        "cancel it or wait for it to finish",
        active_run_id=str(run.id),
        reason="run_active",
    )


async def create_run(
    *,
    session: AsyncSession,
    member: Member,
    project: Project,
    body: RunCreate,
    settings: Settings,
    queue: RunQueue,
    bus: LiveBus,
) -> tuple[Run, str | None]:
    """Queue a campaign; returns the run and a warning for staging/overridden prod."""
    level = projects_service.check_run_allowed(project)
    wanted = body.scripts or list((project.redteam or {}).get("scripts") or BUILTIN_SCRIPT_IDS[:5])
    scripts = await check_scripts(
        session, org_id=project.org_id, scripts=wanted, from_project=body.scripts is None
    )
    config = snapshot(project, body, scripts=scripts, cap_sec=settings.run_duration_cap_sec)
    existing = await active_run(session, project_id=project.id)
    if existing is not None:
        raise _busy(existing)
    from cogumi.quotas.service import charge_run

    limits = await charge_run(session, project=project, settings=settings)  # 429 when spent
    config["quota"] = {"events_per_run": limits.events_per_run}
    run = Run(
        id=uuid.uuid4(),
        org_id=project.org_id,
        project_id=project.id,
        status=RunStatus.queued,
        config=config,
        created_by=member.user_id,
        duration_cap_sec=settings.run_duration_cap_sec,
        enqueued_at=utcnow(),
    )
    try:
        async with session.begin_nested():
            session.add(run)
            await session.flush()
    except IntegrityError:
        # A concurrent start won the race for the one-active-run index.
        winner = await active_run(session, project_id=project.id)
        busy = _busy(winner) if winner else Conflict("this project already has an active run")
        raise busy from None
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.RUN_CREATED,
        target_type="run",
        target_id=run.id,
        detail={"project_id": str(project.id), "scripts": config["scripts"]},
    )
    await publish_status(session, bus=bus, run=run)
    enqueue_after_commit(session, queue=queue, run_id=run.id)
    warning = STAGING_WARNING.format(env=project.environment.value) if level == "warning" else None
    return run, warning


# --- reading -----------------------------------------------------------------


async def get_run(*, session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> Run:
    return await get_in_org(session, Run, run_id, org_id, what="run")


async def list_runs(
    *, session: AsyncSession, project: Project, limit: int, cursor: str | None
) -> tuple[list[Run], str | None]:
    """The project's runs, newest first, keyset-paginated on (created_at, id)."""
    query = in_org(Run, project.org_id).where(Run.project_id == project.id)
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(
            (Run.created_at < created_at) | ((Run.created_at == created_at) & (Run.id < row_id))
        )
    query = query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None


async def list_results(*, session: AsyncSession, run: Run) -> Sequence[ScriptResult]:
    query = in_org(ScriptResult, run.org_id).where(ScriptResult.run_id == run.id)
    return (await session.scalars(query.order_by(ScriptResult.created_at, ScriptResult.id))).all()


async def list_story(*, session: AsyncSession, run: Run) -> Sequence[StoryStep]:
    query = in_org(StoryStep, run.org_id).where(StoryStep.run_id == run.id)
    order = (StoryStep.ts, StoryStep.seq_end, StoryStep.id)
    return (await session.scalars(query.order_by(*order))).all()


# --- status changes ----------------------------------------------------------


async def publish_status(
    session: AsyncSession,
    *,
    bus: LiveBus,
    run: Run,
    status: RunStatus | None = None,
    reason: str | None = None,
) -> None:
    """A ``run.status`` message on the run's live stream (sent to clients after commit)."""
    data: dict[str, Any] = {
        "run_id": str(run.id),
        "status": (status or run.status).value,
        "failure_reason": reason if reason is not None else run.failure_reason,
        "risk_score": run.risk_score,
        "attempts": run.attempts,
    }
    await stream.publish(
        session, bus=bus, org_id=run.org_id, run_id=run.id, kind="run.status", data=data
    )


async def cancel_run(*, session: AsyncSession, member: Member, run: Run, bus: LiveBus) -> Run:
    """Ask a run to stop: a queued run is canceled now, a running one after its current step.

    Idempotent: cancelling an ended run, or asking twice, changes nothing.
    """
    if run.status in TERMINAL_STATUSES or run.cancel_requested_at is not None:
        return run
    was = run.status.value
    now = utcnow()
    run.cancel_requested_at = now
    if run.status == RunStatus.queued:
        run.status = RunStatus.canceled
        run.ended_at = now
    await session.flush()
    record_by(
        session,
        member.principal,
        org_id=member.org_id,
        action=Action.RUN_CANCELED,
        target_type="run",
        target_id=run.id,
        detail={"project_id": str(run.project_id), "was": was},
    )
    if run.status == RunStatus.canceled:
        await publish_status(session, bus=bus, run=run)
    return run


async def finish_run(
    session: AsyncSession,
    *,
    bus: LiveBus,
    run: Run,
    status: RunStatus,
    reason: str | None = None,
    risk_score: int | None = None,
) -> Run:
    """End a run (a failed one always with a readable reason) and announce it."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status} is not a final status")
    if status == RunStatus.failed and not reason:
        reason = "the campaign failed without giving a reason"
    run.status = status
    run.failure_reason = reason
    run.ended_at = utcnow()
    if risk_score is not None:
        run.risk_score = risk_score
    await session.flush()
    await publish_status(session, bus=bus, run=run)
    await webhooks_service.run_finished(session, run=run)
    return run


# --- writers for the campaign engine -----------------------------------------


async def record_script_result(
    session: AsyncSession,
    *,
    run: Run,
    script_id: str,
    technique_id: str,
    result: ScriptResultValue | str,
    score: int,
    severity: Severity | str,
    confidence: float,
    summary: str,
) -> ScriptResult:
    row = ScriptResult(
        org_id=run.org_id,
        run_id=run.id,
        script_id=script_id,
        technique_id=technique_id,
        result=ScriptResultValue(result),
        score=max(0, min(100, int(score))),
        severity=Severity(severity),
        confidence=max(0.0, min(1.0, float(confidence))),
        summary=summary[:4000],
    )
    session.add(row)
    await session.flush()
    return row


async def add_story_step(
    session: AsyncSession,
    *,
    bus: LiveBus,
    run: Run,
    step_kind: StepKind | str,
    claim_title: str,
    claim_summary: str = "",
    severity: Severity | str = Severity.info,
    status: str | None = None,
    script_id: str | None = None,
    attack_style: str | None = None,
    evidence_event_ids: Sequence[uuid.UUID | str] = (),
    seq_start: int | None = None,
    seq_end: int | None = None,
    finding_id: uuid.UUID | None = None,
    ts: datetime | None = None,
) -> StoryStep:
    """Append a step to the run's story and announce it as ``story.step.created``."""
    step = StoryStep(
        id=uuid.uuid4(),
        org_id=run.org_id,
        run_id=run.id,
        ts=ts or utcnow(),
        seq_start=seq_start,
        seq_end=seq_end,
        script_id=script_id,
        step_kind=StepKind(step_kind),
        severity=Severity(severity),
        status=status,
        claim_title=claim_title[:300],
        claim_summary=claim_summary[:4000],
        attack_style=attack_style,
        evidence_event_ids=[str(e) for e in evidence_event_ids][:8],
        finding_id=finding_id,
    )
    session.add(step)
    await session.flush()
    from cogumi.runs.schemas import StoryStepOut

    data = StoryStepOut.model_validate(step).model_dump(mode="json")
    await stream.publish(
        session, bus=bus, org_id=run.org_id, run_id=run.id, kind="story.step.created", data=data
    )
    return step
