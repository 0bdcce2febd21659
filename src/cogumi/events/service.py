"""Events: payload bounds and integrity hash, seq reservation, bulk insert,
throttle, heartbeats, watermarks and the wizard's connection state.

The ingest request path itself (parse, prepare, store a batch) lives in
:mod:`cogumi.events.ingest`; these are the pieces it shares with the campaign
engine, plus the rest of the sidecar-facing service.

A batch may carry the sidecar's *watermark*: the instant before which every
exchange it saw has been shipped. The latest one per token is kept, so the
engine can tell when a step's network evidence is complete
(:func:`watermark_for_project`) instead of sleeping a fixed grace period.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.errors import Forbidden, PayloadTooLarge, TooManyRequests
from cogumi.events.models import Event, SidecarStatus
from cogumi.events.schemas import EventIn, HeartbeatIn
from cogumi.projects.models import Project, SidecarToken, TokenStatus
from cogumi.runs.models import Run, RunStatus
from cogumi.tenancy.ratelimit import RateLimiter

PAYLOAD_LIMIT = 64 * 1024
INGEST_WINDOW_SEC = 60
# A sidecar counts towards the project's watermark while it heartbeats (every 15 s by default).
WATERMARK_FRESH = timedelta(minutes=2)
STATUS_KEPT = timedelta(days=1)
"""How long the status row of a sidecar process that went silent is kept (replicas and
restarts each make a row; a heartbeat of the token deletes its rows silent that long)."""
STOPPED = "stopped"
"""The ``state`` of a sidecar's last heartbeat when it shuts down cleanly."""
_PREVIEW_KEYS = ("body_redacted_preview", "summary")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def integrity_hash(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the redacted payload, as stored."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def _cut_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[: max(0, max_bytes)].decode("utf-8", errors="ignore")


def bound_payload(payload: dict[str, Any], limit: int = PAYLOAD_LIMIT) -> dict[str, Any]:
    """Truncate a payload to ``limit`` bytes of canonical JSON, preview first."""
    size = len(canonical_json(payload))
    if size <= limit:
        return payload
    bounded = dict(payload)
    for key in _PREVIEW_KEYS:
        value = bounded.get(key)
        if isinstance(value, str) and value:
            excess = size - limit + 64  # room for the "truncated" marker
            bounded[key] = _cut_utf8(value, len(value.encode("utf-8")) - excess)
            bounded["truncated"] = True
            size = len(canonical_json(bounded))
            if size <= limit:
                return bounded
    summary = bounded.get("summary")
    return {
        "summary": _cut_utf8(summary, 1024) if isinstance(summary, str) else "",
        "truncated": True,
        "dropped_fields": sorted(k for k in payload if k != "summary"),
    }


def event_row(
    event: EventIn,
    *,
    org_id: uuid.UUID,
    project_id: uuid.UUID,
    run_id: uuid.UUID | None,
    seq: int | None,
    token_id: uuid.UUID | None,
    received_at: datetime,
) -> dict[str, Any]:
    """The stored row of one ingested event (plain dict for a bulk insert)."""
    payload = event.payload_redacted
    canonical = canonical_json(payload)  # serialised once: size check and hash
    if len(canonical) > PAYLOAD_LIMIT:
        payload = bound_payload(payload)
        canonical = canonical_json(payload)
    destination = event.destination
    http = event.http
    return {
        "id": uuid.uuid4(),
        "org_id": org_id,
        "project_id": project_id,
        "run_id": run_id,
        "seq": seq,
        "ts": event.ts if event.ts.tzinfo else event.ts.replace(tzinfo=received_at.tzinfo),
        "received_at": received_at,
        "channel": event.channel,
        "type": event.type,
        "actor": event.actor,
        "dest_host": destination.host.lower() if destination else None,
        "dest_path": destination.path if destination else None,
        "dest_port": destination.port if destination else None,
        "classification": destination.classification if destination else None,
        "sensitive_path": destination.sensitive_path if destination else None,
        "http_method": http.method.upper() if http and http.method else None,
        "status_code": http.status_code if http else None,
        "bytes_out": http.bytes_out if http else None,
        "bytes_in": http.bytes_in if http else None,
        "duration_ms": http.duration_ms if http else None,
        "payload_redacted": payload,
        "matches": [m.model_dump() for m in event.matches],
        "integrity_hash": hashlib.sha256(canonical).hexdigest(),
        "error": event.error,
        "sidecar_token_id": token_id,
    }


_RUNS = cast(Table, Run.__table__)
_SIDECAR_STATUS = cast(Table, SidecarStatus.__table__)
_EVENTS = cast(Table, Event.__table__)
_EVENT_COLUMNS = tuple(column.name for column in _EVENTS.columns)


async def reserve_seq(session: AsyncSession, *, run_id: uuid.UUID, count: int) -> int:
    """Reserve ``count`` seq numbers for a run; returns the first. Row-locked, gap-free."""
    first, _ = await _reserve(session, run_id=run_id, count=count, probe=False)
    return first


async def reserve_seq_and_probe(
    session: AsyncSession, *, run_id: uuid.UUID, count: int
) -> tuple[int, bool]:
    """:func:`reserve_seq`, also telling whether any sidecar ever shipped to the run's
    project, in the same statement: without one, a run has no network events
    (every non-empty ingest batch leaves a sidecar status row)."""
    return await _reserve(session, run_id=run_id, count=count, probe=True)


async def _reserve(
    session: AsyncSession, *, run_id: uuid.UUID, count: int, probe: bool
) -> tuple[int, bool]:
    # A Core update: the ORM's bulk-update bookkeeping costs more than the statement.
    returned: list[Any] = [_RUNS.c.last_seq]
    if probe:
        # The run's project through its own subquery: SQLite renders RETURNING columns
        # unqualified, so a subquery correlated to the updated row would compare
        # sidecar_status.project_id with itself (true whenever any sidecar shipped).
        run = _RUNS.alias("probed_run")
        project = select(run.c.project_id).where(run.c.id == run_id).scalar_subquery()
        returned.append(
            select(_SIDECAR_STATUS.c.token_id)
            .where(_SIDECAR_STATUS.c.project_id == project)
            .exists()
        )
    row = (
        await session.execute(
            update(_RUNS)
            .where(_RUNS.c.id == run_id)
            .values(last_seq=_RUNS.c.last_seq + count)
            .returning(*returned)
        )
    ).one()
    return int(row[0]) - count + 1, bool(row[1]) if probe else False


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows through the driver's bulk path, in the session's transaction.

    Values go through the columns' own SQLAlchemy bind processors, so they are
    stored exactly as an ORM insert would store them; only the per-row
    statement machinery is skipped: asyncpg ``COPY`` on PostgreSQL, one
    ``executemany`` on SQLite. Other dialects (or a PostgreSQL connection with
    no transaction begun yet) take the plain Core insert.
    """
    if not rows:
        return
    connection = await session.connection()
    dialect = connection.dialect
    driver = (await connection.get_raw_connection()).driver_connection
    if dialect.name == "postgresql" and driver is not None and driver.is_in_transaction():
        await driver.copy_records_to_table(
            _EVENTS.name, records=_records(dialect, rows), columns=_EVENT_COLUMNS
        )
    elif dialect.name == "sqlite" and driver is not None:
        await driver.executemany(_sqlite_insert_sql(), _records(dialect, rows))
    else:
        await session.execute(insert(_EVENTS), list(rows))


def _records(dialect: Dialect, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    processors = _bind_processors(dialect)
    return [
        tuple(process(row.get(name)) if process else row.get(name) for name, process in processors)
        for row in rows
    ]


@cache
def _bind_processors(dialect: Dialect) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (column.name, column.type._cached_bind_processor(dialect)) for column in _EVENTS.columns
    )


@cache
def _sqlite_insert_sql() -> str:
    marks = ", ".join("?" for _ in _EVENT_COLUMNS)
    return f"INSERT INTO {_EVENTS.name} ({', '.join(_EVENT_COLUMNS)}) VALUES ({marks})"  # noqa: S608 - fixed names


async def check_ingest_rate(
    limiter: RateLimiter, *, token_id: uuid.UUID, events: int, per_min: int
) -> None:
    """Charge the token's per-minute budget by the batch's event count.

    Over budget: 429 with ``Retry-After`` (the sidecar keeps the batch and
    retries it). A batch bigger than a whole minute's budget could never get
    in, so it is refused as too large (the sidecar counts it as dropped).
    """
    if events == 0:
        return
    if events > per_min:
        raise PayloadTooLarge(
            f"a batch of {events} events exceeds the ingest limit of {per_min} events per "
            "minute; send smaller batches",
            limit=per_min,
        )
    wait = await limiter.hit(
        f"ingest:{token_id}", limit=per_min, window_sec=INGEST_WINDOW_SEC, cost=events
    )
    if wait is not None:
        raise TooManyRequests(
            f"this sidecar token sent more than {per_min} events in a minute",
            retry_after=wait,
            limit=per_min,
        )


async def _run_active(
    session: AsyncSession, *, project_id: uuid.UUID, run_id: uuid.UUID | None
) -> bool:
    query = select(Run.id).where(Run.project_id == project_id, Run.status == RunStatus.running)
    if run_id is not None:
        query = query.where(Run.id == run_id)
    return await session.scalar(query.limit(1)) is not None


async def _locked_status(
    session: AsyncSession, token: SidecarToken, instance: str
) -> SidecarStatus:
    """The status row of the token's process ``instance``, locked for this
    transaction; created on first use.

    The lock makes concurrent batches of one sidecar update it one after the
    other (no lost watermark update); a concurrent first insert is caught in a
    savepoint and the winner's row is used.
    """
    key = (token.id, instance)
    status = await session.get(SidecarStatus, key, with_for_update=True)
    if status is not None:
        return status
    try:
        async with session.begin_nested():
            status = SidecarStatus(
                token_id=token.id, instance_id=instance, org_id=token.org_id,
                project_id=token.project_id,
            )  # fmt: skip
            session.add(status)
            await session.flush()
        return status
    except IntegrityError:
        row = await session.get(SidecarStatus, key, with_for_update=True, populate_existing=True)
        assert row is not None
        return row


async def _touch_status(
    session: AsyncSession,
    *,
    token: SidecarToken,
    heartbeat: HeartbeatIn,
) -> SidecarStatus:
    status = await _locked_status(session, token, heartbeat.instance_id)
    status.last_heartbeat_at = now = utcnow()
    status.sidecar_version = heartbeat.sidecar_version
    status.counters = dict(heartbeat.counters)
    if heartbeat.state:
        status.counters["state"] = heartbeat.state
    # Stopped: everything it saw is shipped (or counted as dropped), so it no longer
    # holds the project's watermark back and a replica that goes on is not held by it.
    status.stopped_at = now if heartbeat.state == STOPPED else None
    await session.flush()
    return status


@dataclass(frozen=True)
class HeartbeatRecorded:
    run_active: bool
    # Events the sidecar dropped since its previous heartbeat, by reason (see dropped_since).
    newly_dropped: dict[str, int]


def _dropped_by_reason(counters: Mapping[str, Any]) -> dict[str, int]:
    """``counters.dropped`` as {reason: n}; a sidecar that only sends ``dropped_total``
    reports it as reason ``unspecified``. Anything malformed counts as nothing."""
    dropped = counters.get("dropped")
    if isinstance(dropped, dict):
        return {str(k): int(v) for k, v in dropped.items() if isinstance(v, int) and v > 0}
    total = counters.get("dropped_total")
    return {"unspecified": int(total)} if isinstance(total, int | float) and total > 0 else {}


def dropped_since(previous: Mapping[str, Any], heartbeat: HeartbeatIn) -> dict[str, int]:
    """Events dropped since the previous heartbeat of the same sidecar, by reason.

    A sidecar's counters are totals since *it* started, so the increase is the
    difference with the previous heartbeat of the same process (same
    ``started_at``); a restarted sidecar counts from zero again, so its whole
    total is new. A heartbeat without ``started_at`` is compared with the
    previous one whatever it was (an older sidecar; a restart then goes unseen).
    """
    now = _dropped_by_reason(heartbeat.counters)
    same_process = (
        heartbeat.started_at is None or previous.get("started_at") == heartbeat.started_at
    )
    before = _dropped_by_reason(previous) if same_process else {}
    increase = {reason: n - before.get(reason, 0) for reason, n in now.items()}
    return {reason: n for reason, n in increase.items() if n > 0}


async def record_heartbeat(
    session: AsyncSession, *, token: SidecarToken, project_id: uuid.UUID, heartbeat: HeartbeatIn
) -> HeartbeatRecorded:
    """Store the heartbeat and add what the sidecar dropped since its last one to the
    token's ``events_dropped``; also says whether a campaign of the project is running."""
    if project_id != token.project_id:
        raise Forbidden("this sidecar token belongs to another project", field="project_id")
    # The token row first, then its status row: the order ingest takes them in. The
    # other order deadlocks (on PostgreSQL) with a batch of the same sidecar.
    token.last_seen_at = now = utcnow()
    await session.flush()
    previous = dict((await _locked_status(session, token, heartbeat.instance_id)).counters or {})
    status = await _touch_status(session, token=token, heartbeat=heartbeat)
    status.counters = {**status.counters, "started_at": heartbeat.started_at}
    newly_dropped = dropped_since(previous, heartbeat)
    token.events_dropped += sum(newly_dropped.values())
    await _forget_silent(session, token=token, instance=heartbeat.instance_id, now=now)
    active = await _run_active(session, project_id=project_id, run_id=None)
    return HeartbeatRecorded(run_active=active, newly_dropped=newly_dropped)


async def _forget_silent(
    session: AsyncSession, *, token: SidecarToken, instance: str, now: datetime
) -> None:
    """Delete the status rows of the token's other processes silent for
    :data:`STATUS_KEPT` (restarted or scaled-down replicas)."""
    cutoff = now - STATUS_KEPT
    await session.execute(
        delete(SidecarStatus).where(
            SidecarStatus.token_id == token.id,
            SidecarStatus.instance_id != instance,
            SidecarStatus.last_heartbeat_at < cutoff,
            (SidecarStatus.last_event_at.is_(None)) | (SidecarStatus.last_event_at < cutoff),
        )
    )


async def watermark_for_project(session: AsyncSession, *, project_id: uuid.UUID) -> datetime | None:
    """Up to when the project's network evidence is complete, or None if unknown.

    The *earliest* watermark of the project's live sidecar processes (active
    token, heartbeat in the last two minutes, not stopped): evidence is complete
    only once every sidecar that could have seen the agent's traffic has shipped
    it, replicas sharing a token included (each process has its own row).
    Sidecars that never sent a watermark (older versions) do not count.
    """
    since = utcnow() - WATERMARK_FRESH
    return await session.scalar(
        select(func.min(SidecarStatus.watermark))
        .join(SidecarToken, SidecarToken.id == SidecarStatus.token_id)
        .where(
            SidecarStatus.project_id == project_id,
            SidecarToken.status == TokenStatus.active,
            SidecarStatus.last_heartbeat_at >= since,
            SidecarStatus.stopped_at.is_(None),
            SidecarStatus.watermark.is_not(None),
        )
    )


async def connection_state(session: AsyncSession, *, project: Project) -> dict[str, Any]:
    """The wizard's verify step: last heartbeat, last event, events in the last minute."""
    statuses = (
        await session.scalars(select(SidecarStatus).where(SidecarStatus.project_id == project.id))
    ).all()
    now = utcnow()
    recent = await session.scalar(
        select(func.count())
        .select_from(Event)
        .where(Event.project_id == project.id, Event.received_at >= now - timedelta(minutes=1))
    )
    heartbeats = [s for s in statuses if s.last_heartbeat_at is not None]
    latest = max(heartbeats, key=lambda s: s.last_heartbeat_at or now, default=None)
    live = [
        s for s in heartbeats
        if now - cast(datetime, s.last_heartbeat_at) < WATERMARK_FRESH and s.stopped_at is None
    ]  # fmt: skip
    last_events = [s.last_event_at for s in statuses if s.last_event_at is not None]
    last_heartbeat = latest.last_heartbeat_at if latest else None
    return {
        "project_id": project.id,
        "connected": bool(live),
        "last_heartbeat_at": last_heartbeat,
        "last_event_at": max(last_events, default=None),
        "events_last_minute": int(recent or 0),
        "sidecar_version": latest.sidecar_version if latest else None,
        # The live processes' counters added up; with none live, the last one heard.
        "counters": _summed([s.counters for s in live]) if live
                    else dict(latest.counters) if latest else {},
        "sidecars_live": len(live),
    }  # fmt: skip


def _summed(counters: list[dict[str, Any]]) -> dict[str, Any]:
    """Live sidecar processes' counters added up key by key (a sidecar's counters are
    totals and rates since it started; a key of dropped events by reason is added up
    reason by reason), except ``started_at``: the earliest. A key whose values are not
    all numbers, or not all such maps, keeps the first process's value."""
    total: dict[str, Any] = {}
    for key in dict.fromkeys(k for c in counters for k in c):
        values = [c[key] for c in counters if key in c]
        if all(_number(v) for v in values):
            total[key] = min(values) if key == "started_at" else sum(values)
        elif all(isinstance(v, dict) and all(_number(n) for n in v.values()) for v in values):
            merged: dict[str, Any] = {}
            for value in values:
                for name, n in value.items():
                    merged[name] = merged.get(name, 0) + n
            total[key] = merged
        else:
            total[key] = values[0]
    return total


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
