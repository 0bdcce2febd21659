"""Sidecar-facing ingest API and the wizard's connection status.

Sidecar routes authenticate with ``X-Sidecar-Token`` only (never a cookie or
an API key): the token names its org and project.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import select
from sse_starlette import EventSourceResponse

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.db.scope import get_in_org
from cogumi.errors import Unauthenticated
from cogumi.events import ingest, ingest_fast, service, stream
from cogumi.events.models import Event
from cogumi.events.schemas import (
    ConnectionOut,
    EventOut,
    EventPage,
    HeartbeatIn,
    HeartbeatOut,
    IngestBatchIn,
    IngestResult,
    SidecarConfigOut,
)
from cogumi.projects import service as projects_service
from cogumi.projects.models import Project, SidecarToken
from cogumi.quotas.ingest import IngestQuota
from cogumi.runs.models import Run
from cogumi.tenancy.deps import DbSession, Reader

router = APIRouter(tags=["ingest"])
# seq columns are 32-bit integers: a larger number is past every event, and must not
# reach PostgreSQL (which refuses it as out of range).
MAX_SEQ = 2**31 - 1
# A live stream's time to end by itself once the server is told to stop, before
# sse-starlette cancels it (it ends at once unless a database read is under way).
SSE_SHUTDOWN_GRACE_SEC = 3.0
# Mounted without the principal dependency (and its request transaction): the
# sidecar token is the only credential, and the handler runs its own short
# transactions (see :func:`ingest_events`).
ingest_router = APIRouter(tags=["ingest"])

log = logging.getLogger(__name__)


async def sidecar_token(
    session: DbSession,
    x_sidecar_token: Annotated[
        str | None, Header(description="The project's sidecar token.")
    ] = None,
) -> SidecarToken:
    """401 without a token or with an unknown one, 403 when revoked."""
    if not x_sidecar_token:
        raise Unauthenticated("send the sidecar token in the X-Sidecar-Token header")
    return await projects_service.authenticate_sidecar_token(session, x_sidecar_token)


SidecarAuth = Annotated[SidecarToken, Depends(sidecar_token)]


def _batch_schema() -> dict[str, Any]:
    """The request body's JSON schema for the API docs, with its definitions inlined
    (the route reads raw bytes, so FastAPI does not document the body itself)."""
    schema = IngestBatchIn.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


@ingest_router.post(
    "/ingest/events",
    response_model=IngestResult,
    responses={429: {"description": "Over the token's events/min; see `Retry-After`."}},
    openapi_extra=_batch_schema(),
)
async def ingest_events(
    request: Request,
    x_sidecar_token: Annotated[
        str | None, Header(description="The project's sidecar token.")
    ] = None,
) -> IngestResult:
    """Store a batch of sidecar events (``IngestBatchIn``). A repeated ``batch_id``
    stores nothing twice.

    Each token may send ``COGUMI_INGEST_RATE_LIMIT_PER_MIN`` events a minute,
    counted by events, not requests.
    """
    # The API's hot path: the body is validated once from its bytes, rows are
    # prepared outside any transaction, and the common case is stored by the
    # driver-level fast path (see cogumi.events.ingest_fast).
    state = request.app.state
    if not x_sidecar_token:
        raise Unauthenticated("send the sidecar token in the X-Sidecar-Token header")
    body = await request.body()
    quota = IngestQuota(settings=state.settings, bus=state.live_bus)
    fast = ingest_fast.fast_path(state.engine)
    if fast is None:
        result = await _ingest_general(request, x_sidecar_token, body, quota)
    else:
        async with fast.connect() as db:
            ref = await db.authenticate(x_sidecar_token)
            batch = ingest.parse_batch(body)
            target = await db.find_target(ref, batch, quota)
            prepared = await _prepare(request, ref, batch)
            stored = await db.write(ref, prepared, target)
        result = stored or await _store_general(request, ref, prepared, target, quota)
        result = _masked(result, ref, prepared)
    state.metrics.ingested(accepted=result.accepted, dropped=result.dropped)
    return result


async def _prepare(
    request: Request, ref: ingest.SidecarRef, batch: ingest.Batch
) -> ingest.Prepared:
    """Charge the token's events/min budget (429), then prepare the rows."""
    state = request.app.state
    await service.check_ingest_rate(
        state.rate_limiter,
        token_id=ref.id,
        events=len(batch.events),
        per_min=state.settings.ingest_rate_limit_per_min,
    )
    return await ingest.prepare_stepwise(
        batch, dialect=state.engine.dialect, token=ref, received_at=utcnow()
    )


async def _store_general(
    request: Request,
    ref: ingest.SidecarRef,
    prepared: ingest.Prepared,
    target: ingest.Target,
    quota: IngestQuota,
) -> IngestResult:
    state = request.app.state
    async with transaction(state.sessionmaker) as session:
        return await ingest.store(
            session, token=ref, prepared=prepared, target=target, quota=quota,
            bus=state.live_bus,
        )  # fmt: skip


async def _ingest_general(
    request: Request, token_value: str, body: bytes, quota: IngestQuota
) -> IngestResult:
    """Every step through SQLAlchemy (a database without a fast path)."""
    async with request.app.state.sessionmaker() as session, session.begin():
        token = await projects_service.authenticate_sidecar_token(session, token_value)
        ref = ingest.SidecarRef(token.id, token.org_id, token.project_id)
        batch = ingest.parse_batch(body)
        target = await ingest.find_target(session, token=ref, batch=batch, quota=quota)
    prepared = await _prepare(request, ref, batch)
    return _masked(await _store_general(request, ref, prepared, target, quota), ref, prepared)


def _masked(
    result: IngestResult, ref: ingest.SidecarRef, prepared: ingest.Prepared
) -> IngestResult:
    """Say how many secrets the server masked in a stored batch (answer and log, never
    the values: the sender's redaction missed them, which its owner needs to know)."""
    if not prepared.masked or result.duplicate:
        return result
    count = sum(prepared.masked.values())
    log.warning(
        "ingest masked %d secret(s) a sender left in the clear: token %s, batch %s, kinds %s",
        count, ref.id, prepared.batch_id, dict(sorted(prepared.masked.items())),
    )  # fmt: skip
    return result.model_copy(update={"redacted": count})


@router.post("/projects/{project_id}/sidecar/heartbeat", response_model=HeartbeatOut)
async def heartbeat(
    project_id: uuid.UUID,
    body: HeartbeatIn,
    token: SidecarAuth,
    session: DbSession,
    request: Request,
) -> HeartbeatOut:
    """Record the sidecar's version and counters (sent, dropped, queued...).

    What it dropped since its last heartbeat is added to the token's
    ``events_dropped`` and to ``cogumi_sidecar_dropped_events_total``.
    ``run_active`` tells the sidecar whether a campaign is running, so it knows
    how often to refresh its watermark.
    """
    recorded = await service.record_heartbeat(
        session, token=token, project_id=project_id, heartbeat=body
    )
    request.app.state.metrics.sidecar_dropped(recorded.newly_dropped)
    return HeartbeatOut(ok=True, run_active=recorded.run_active)


@router.get("/sidecar/config", response_model=SidecarConfigOut)
async def sidecar_config(token: SidecarAuth, session: DbSession) -> SidecarConfigOut:
    """The project's destination rules, fetched by the sidecar at start and periodically."""
    project = await session.get(Project, token.project_id)
    assert project is not None  # the token row cascades with its project
    return SidecarConfigOut(
        project_id=project.id,
        tool_domains=list(project.tool_domains),
        internal_suffixes=list(project.internal_suffixes),
        sensitive_paths=list(project.sensitive_paths),
        sink_domains=list(project.sink_domains),
    )


@router.get("/projects/{project_id}/connection", response_model=ConnectionOut)
async def connection(project_id: uuid.UUID, member: Reader, session: DbSession) -> ConnectionOut:
    """Is a sidecar connected? Last heartbeat, last event, events in the last minute."""
    project = await projects_service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    return ConnectionOut(**await service.connection_state(session, project=project))


@router.get("/runs/{run_id}/events", response_model=EventPage)
async def run_events(
    run_id: uuid.UUID,
    member: Reader,
    session: DbSession,
    after_seq: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="Return events with a larger seq.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> EventPage:
    """A run's events in ``seq`` order, one page at a time."""
    await get_in_org(session, Run, run_id, member.org_id, what="run")
    rows = (
        await session.scalars(
            select(Event)
            .where(Event.run_id == run_id, Event.org_id == member.org_id, Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
    ).all()
    items = [EventOut.from_row(row) for row in rows]
    next_after = items[-1].seq if len(items) == limit and items else None
    return EventPage(items=items, next_after_seq=next_after)


@router.get(
    "/runs/{run_id}/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
)
async def run_stream(
    run_id: uuid.UUID,
    request: Request,
    member: Reader,
    session: DbSession,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this id.")
    ] = None,
) -> EventSourceResponse:
    """Live ``run.status``, ``story.step.created``, ``finding.created``, ``quota.warning``.

    Every message has an ``id:``; reconnecting with ``Last-Event-ID`` replays what was
    missed. A comment line is sent every 15 s to keep proxies from closing the stream.
    """
    await get_in_org(session, Run, run_id, member.org_id, what="run")
    after = min(int(last_event_id), MAX_SEQ) if last_event_id and last_event_id.isdigit() else 0
    stop = anyio.Event()  # set by sse-starlette when the server shuts down
    messages = stream.sse_messages(
        sessionmaker=request.app.state.sessionmaker,
        bus=request.app.state.live_bus,
        run_id=run_id,
        after=after,
        stop=stop,
    )
    return EventSourceResponse(
        request.app.state.metrics.sse_client(messages),
        ping=15,
        shutdown_event=stop,
        shutdown_grace_period=SSE_SHUTDOWN_GRACE_SEC,
    )
