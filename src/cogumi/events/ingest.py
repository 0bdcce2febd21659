"""The ingest hot path: a sidecar batch parsed once, prepared outside any
transaction, then stored with a handful of statements.

A batch goes through three phases; each holds less than the one before:

1. :func:`parse_batch` validates the raw body bytes with pydantic's JSON
   parser (no intermediate Python JSON tree), keeping the 422 shape;
2. :func:`find_target` (a read, no locks): the run the events attach to, its
   event cap, and the org's storage check;
3. :func:`prepare` (CPU only, no transaction): per event the payload is
   bounded and serialised once to canonical JSON, and that one text is the
   integrity-hash input, the stored column value and the storage estimate;
   every column value is made ready for the driver;
4. :func:`store` (the write transaction): claim the ``batch_id``
   (insert-or-nothing), reserve the run's ``seq`` range (one conditional
   ``UPDATE … RETURNING``), one bulk insert, then the token, quota and sidecar
   status counters. Rare cases (a run at its cap, a run that ended meanwhile,
   policy violations) take a slower road.

Locks are taken as late as possible: everything that costs CPU happens before
the transaction that serialises concurrent batches of one run (and on SQLite,
before the database's write lock).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import DateTime, Table, and_, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.errors import Forbidden, InvalidInput, NotFound
from cogumi.events import fastparse, guard
from cogumi.events.bus import LiveBus
from cogumi.events.fastparse import FastBatch, FastEvent
from cogumi.events.models import Event, IngestBatch, SidecarStatus
from cogumi.events.schemas import EventIn, IngestBatchIn, IngestResult, MatchIn
from cogumi.events.service import PAYLOAD_LIMIT, bound_payload
from cogumi.projects.models import SidecarToken, TokenStatus
from cogumi.quotas.ingest import IngestQuota
from cogumi.quotas.runcap import WARN_AT, snapshot_cap
from cogumi.quotas.service import Limits
from cogumi.runs.models import Run, RunStatus
from cogumi.schemas import UNSTORABLE

_EVENTS = cast(Table, Event.__table__)
_RUNS = cast(Table, Run.__table__)
_TOKENS = cast(Table, SidecarToken.__table__)
_BATCHES = cast(Table, IngestBatch.__table__)
_STATUS = cast(Table, SidecarStatus.__table__)

# The stored columns in the order :func:`prepare` builds them (checked against the table).
COLUMNS = (
    "id", "org_id", "project_id", "run_id", "seq", "ts", "received_at", "channel", "type",
    "actor", "dest_host", "dest_path", "dest_port", "classification", "sensitive_path",
    "http_method", "status_code", "bytes_out", "bytes_in", "duration_ms", "payload_redacted",
    "matches", "integrity_hash", "error", "sidecar_token_id",
)  # fmt: skip
_RUN, _SEQ = COLUMNS.index("run_id"), COLUMNS.index("seq")
SQLITE_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608 - fixed names
)
"""Prepared rows into SQLite (the fast path, the general path and the bench's baseline)."""
assert set(COLUMNS) == {c.name for c in _EVENTS.columns}, "events columns changed"

# The canonical form of :func:`cogumi.events.service.canonical_json`, made once;
# NaN and Infinity are refused (they are not JSON, and PostgreSQL rejects them).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_MATCHES = TypeAdapter(list[MatchIn])
_BATCH = TypeAdapter(IngestBatchIn)


# --- 1. parse ------------------------------------------------------------------


Batch = IngestBatchIn | FastBatch
"""A validated batch: the fast decoder's, or pydantic's when that one declined."""


def parse_batch(body: bytes) -> Batch:
    """Validate the raw body in one pass; a 422 names the field as FastAPI would."""
    fast = fastparse.decode(body)
    if fast is not None:
        return fast
    try:
        batch = _BATCH.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None
    if b"\\u0000" in body:
        _refuse_nul(batch)
    return batch


def _refuse_nul(batch: IngestBatchIn) -> None:
    """422 for a NUL in an event's text columns (PostgreSQL cannot store it).

    The events' models carry no per-field validator (see ``BulkInput``): a NUL can
    only arrive as the JSON escape ``\\u0000``, so the raw body says whether to
    look at all, and unpaired surrogates never get here (the JSON parser refuses
    them). The payload is stored as JSON, where the escape is kept.
    """
    for index, event in enumerate(batch.events):
        where = _nul_at(event.model_dump(exclude={"payload_redacted"}))
        if where is not None:
            raise InvalidInput(f"events.{index}.{where}", UNSTORABLE)


def _nul_at(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string holding a NUL, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if not isinstance(value, dict | list):
        return None
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        found = _nul_at(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


# --- 2. read -------------------------------------------------------------------


@dataclass(frozen=True)
class SidecarRef:
    """The authenticated sidecar token: all ingest needs of it."""

    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID


@dataclass(frozen=True)
class RunRow:
    """What the read phase needs of a run."""

    id: uuid.UUID
    status: str
    snapshot_cap: int | None  # the events cap fixed in the run's config, if any


@dataclass(frozen=True)
class Target:
    """Where the batch goes, as read before the write transaction."""

    run_id: uuid.UUID | None
    named: bool  # the batch named its run (else: the project's running one)
    running: bool
    cap: int
    limits: Limits | None

    @property
    def warn_at(self) -> int:
        """Below this many stored events the run needs no quota notice."""
        return math.ceil(self.cap * WARN_AT)


def check_project(token: SidecarRef, batch: Batch) -> None:
    if batch.project_id != token.project_id:
        raise Forbidden("this sidecar token belongs to another project", field="project_id")


def target_for(batch: Batch, run: RunRow | None, limits: Limits | None) -> Target:
    """The run events attach to: the one named (of this project, else 404), or the running one."""
    named = batch.run_id is not None
    if run is None:
        if named and batch.events:
            raise NotFound("run not found in this project", field="run_id")
        return Target(None, named, False, 0, limits)
    cap = 0
    if limits is not None:
        cap = run.snapshot_cap if run.snapshot_cap is not None else limits.events_per_run
    return Target(run.id, named, run.status == RunStatus.running.value, cap, limits)


async def find_target(
    session: AsyncSession, *, token: SidecarRef, batch: Batch, quota: IngestQuota
) -> Target:
    """:func:`target_for`, read with SQLAlchemy (the general path).

    A batch with events is refused (429) when the org's storage is used up.
    """
    check_project(token, batch)
    limits = None
    if batch.events:
        limits = await quota.check_storage(session, org_id=token.org_id)
    query = select(Run.id, Run.status, Run.config).where(Run.project_id == token.project_id)
    if batch.run_id is not None:
        query = query.where(Run.id == batch.run_id)
    else:
        query = query.where(Run.status == RunStatus.running).order_by(Run.started_at.desc())
    row = (await session.execute(query.limit(1))).first()
    run = RunRow(row.id, row.status.value, snapshot_cap(row.config)) if row is not None else None
    return target_for(batch, run, limits)


# --- 3. prepare ----------------------------------------------------------------


@dataclass
class Prepared:
    """A batch's rows, ready for the driver once ``run_id`` and ``seq`` are filled in."""

    batch_id: str
    instance: str  # the sending process's instance_id ("" when it sent none)
    received_at: datetime
    watermark: datetime | None
    rows: list[list[Any]]
    sizes: list[int]  # characters of each stored payload (the storage estimate)
    run_value: Callable[[uuid.UUID], Any]
    # What the story builder needs (read only for batches with policy violations).
    ids: list[str]  # the events' ids, 32 hex digits
    types: list[str]
    timestamps: list[datetime]
    payloads: list[dict[str, Any]]  # as stored
    # Secrets the sender left in the clear and ingest masked, by kind (see events.guard).
    masked: dict[str, int] = field(default_factory=dict)

    @property
    def has_violations(self) -> bool:
        """The batch carries a policy violation (a live story step when in a run)."""
        return "policy.violation" in self.types


def _identity(value: Any) -> Any:
    return value


@cache
def _converters(dialect: Dialect) -> dict[str, Callable[[Any], Any]]:
    """Each column's bind processor for ``dialect`` (identity where it has none).

    The JSON columns are left out (:func:`prepare` hands the driver their text), and
    so is ``id`` (made as hex digits, the form both drivers take).
    """
    return {
        column.name: column.type._cached_bind_processor(dialect) or _identity
        for column in _EVENTS.columns
        if column.name not in ("payload_redacted", "matches", "id")
    }


_TIMESTAMP_SAMPLES = (
    datetime(2026, 11, 27, 14, 0, 0, 123000, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
)


def _sqlite_text(ts: datetime) -> str:
    """SQLAlchemy's default SQLite ``DATETIME`` text of a UTC or naive ``ts``: its
    ``isoformat`` without the offset (half the cost of a ``%`` format of seven fields)."""
    return ts.isoformat(" ", "microseconds")[:26]


@cache
def _timestamp(dialect: Dialect) -> Callable[[datetime], Any]:
    """The ``ts`` column's processor, skipping the UTC conversion when there is none
    to make (a sidecar's timestamps are UTC). On SQLite the text is written directly
    when it is the very text SQLAlchemy would write (checked here, once)."""
    stored: Callable[[datetime], Any]
    stored = DateTime(timezone=True)._cached_bind_processor(dialect) or _identity
    if dialect.name == "sqlite" and all(
        _sqlite_text(sample) == stored(sample) for sample in _TIMESTAMP_SAMPLES
    ):
        stored = _sqlite_text

    def process(ts: datetime) -> Any:
        return stored(ts.astimezone(UTC) if ts.utcoffset() else ts)

    return process


ID_COUNTER_MAX = 4096
"""Ids one call can number in order within a millisecond (the 12 bits of ``rand_a``)."""


def new_ids(count: int) -> list[str]:
    """``count`` version-7 UUIDs (RFC 9562) as 32 hex digits, made in one go.

    The first 48 bits are the Unix time in milliseconds and the next 12 number the
    ids of this call in order (RFC 9562's counter method), followed by 62 random
    bits. So a batch's ids sort together, after every earlier batch's, and go in
    at the end of the primary-key index. Random (version 4) ids went in on one
    random index page each, which every commit wrote again: on SQLite, 200-row
    commits wrote 178 MB of WAL for 40,000 events instead of 78 MB, and took 15
    µs of CPU an event instead of 10. The time an id shows is the time its event
    was received, which the event carries anyway.
    """
    if count > ID_COUNTER_MAX:  # a batch holds at most MAX_EVENTS_PER_BATCH (1,000)
        raise ValueError(f"at most {ID_COUNTER_MAX} ids at a time, not {count}")
    raw = bytearray(os.urandom(16 * count))
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    for k in range(6):
        raw[k::16] = stamp[k : k + 1] * count
    raw[6::16] = bytes(0x70 | (i >> 8) for i in range(count))  # version 7, counter high
    raw[7::16] = bytes(i & 0xFF for i in range(count))  # counter low
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 9562 variant
    digits = raw.hex()
    return [digits[i : i + 32] for i in range(0, 32 * count, 32)]


def _payload_text(
    payload: dict[str, Any], index: int, fast: bool
) -> tuple[dict[str, Any], str, bytes]:
    """The payload (bounded) and its canonical JSON as text and as UTF-8; ``fast``
    when msgspec writes the same bytes (a decoded batch without floats)."""
    if fast:
        data = fastparse.canonical_payload(payload)
        if len(data) <= PAYLOAD_LIMIT:
            return payload, data.decode(), data
    try:
        text = _CANONICAL.encode(payload)
    except ValueError as exc:  # NaN or Infinity
        raise InvalidInput(f"events.{index}.payload_redacted", str(exc)) from None
    data = text.encode()
    if len(data) > PAYLOAD_LIMIT:
        payload = bound_payload(payload)
        text = _CANONICAL.encode(payload)
        data = text.encode()
    return payload, text, data


class _Rows:
    """Builds a batch's stored values event by event (see :func:`prepare`)."""

    def __init__(
        self, batch: Batch, *, dialect: Dialect, token: SidecarRef, received_at: datetime
    ) -> None:
        convert = self.convert = _converters(dialect)
        self.ts_value, self.duration = _timestamp(dialect), convert["duration_ms"]
        self.org = convert["org_id"](token.org_id)
        self.project = convert["project_id"](token.project_id)
        self.sidecar = convert["sidecar_token_id"](token.id)
        self.received = convert["received_at"](received_at)
        self.received_at = received_at
        self.batch = batch
        self.fast_json = isinstance(batch, FastBatch) and not fastparse.payload_floats(batch)
        self.rows: list[list[Any]] = []
        self.sizes: list[int] = []
        self.ids = new_ids(len(batch.events))
        self.timestamps: list[datetime] = []
        self.payloads: list[dict[str, Any]] = []
        # Raw secrets are looked for only in what a sender with another detector sent.
        self.guard = None if guard.trusted(batch.sidecar_version) else guard.Guard()

    def add(self, index: int, event: EventIn | FastEvent) -> None:
        cleaned = None if self.guard is None else _clean(self.guard, event)
        payload_in = event.payload_redacted if cleaned is None else cleaned.payload
        payload, text, data = _payload_text(payload_in, index, self.fast_json)
        ts = event.ts if isinstance(event, EventIn) else fastparse.timestamp(event.ts)
        ts = ts if ts.tzinfo else ts.replace(tzinfo=self.received_at.tzinfo)
        dest, http = event.destination, event.http
        destination = _destination(dest) if dest else (None,) * 5
        error, matches = event.error, _matches_json(event) if event.matches else "[]"
        if cleaned is not None:
            if dest:
                destination = (destination[0], cleaned.path, *destination[2:])
            error = cleaned.error
            matches = _MATCHES.dump_json(_MATCHES.validate_python(cleaned.matches)).decode()
        self.rows.append([
            self.ids[index], self.org, self.project, None, None, self.ts_value(ts), self.received,
            event.channel, event.type, event.actor, *destination,
            *(_http(http, self.duration) if http else (None,) * 5),
            text, matches, hashlib.sha256(data).hexdigest(), error, self.sidecar,
        ])  # fmt: skip
        self.sizes.append(len(text))
        self.timestamps.append(ts)
        self.payloads.append(payload)

    def prepared(self) -> Prepared:
        batch = self.batch
        return Prepared(
            batch_id=batch.batch_id,
            instance=batch.instance_id,
            received_at=self.received_at,
            watermark=_bounded(_watermark(batch), self.received_at),
            rows=self.rows,
            sizes=self.sizes,
            run_value=self.convert["run_id"],
            ids=self.ids,
            types=[event.type for event in batch.events],
            timestamps=self.timestamps,
            payloads=self.payloads,
            masked=dict(self.guard.kinds) if self.guard is not None else {},
        )


def prepare(
    batch: Batch, *, dialect: Dialect, token: SidecarRef, received_at: datetime
) -> Prepared:
    """Every stored value of every event, computed once and outside any transaction."""
    rows = _Rows(batch, dialect=dialect, token=token, received_at=received_at)
    events: Sequence[EventIn | FastEvent] = batch.events
    for index, event in enumerate(events):
        rows.add(index, event)
    return rows.prepared()


PREPARE_STEP = 50
"""Events prepared between two hand-backs to the event loop in :func:`prepare_stepwise`."""


async def prepare_stepwise(
    batch: Batch, *, dialect: Dialect, token: SidecarRef, received_at: datetime
) -> Prepared:
    """:func:`prepare`, handing the event loop back every :data:`PREPARE_STEP` events.

    A 200-event batch takes a few milliseconds to prepare; done in one go, another
    request's transaction whose database answer has arrived waits that long to go on,
    holding its run's and org's row locks meanwhile."""
    rows = _Rows(batch, dialect=dialect, token=token, received_at=received_at)
    events: Sequence[EventIn | FastEvent] = batch.events
    for index, event in enumerate(events):
        rows.add(index, event)
        if index % PREPARE_STEP == PREPARE_STEP - 1:
            await asyncio.sleep(0)
    return rows.prepared()


def _watermark(batch: Batch) -> datetime | None:
    if isinstance(batch, IngestBatchIn):
        return batch.watermark
    return None if batch.watermark is None else fastparse.timestamp(batch.watermark)


def _clean(scanner: guard.Guard, event: EventIn | FastEvent) -> guard.Cleaned | None:
    dest = event.destination
    matches = [
        {"kind": m.kind, "hash": m.hash, "preview": m.preview, "confidence": m.confidence}
        for m in event.matches
    ]
    return scanner.clean(event.payload_redacted, dest.path if dest else None, event.error, matches)


def _matches_json(event: EventIn | FastEvent) -> str:
    if isinstance(event, FastEvent):
        return fastparse.matches_json(event.matches)
    return _MATCHES.dump_json(event.matches).decode()


def _destination(dest: Any) -> tuple[Any, ...]:
    return (dest.host.lower(), dest.path, dest.port, dest.classification, dest.sensitive_path)


def _http(http: Any, duration: Callable[[Any], Any]) -> tuple[Any, ...]:
    method = http.method.upper() if http.method else None
    return (method, http.status_code, http.bytes_out, http.bytes_in, duration(http.duration_ms))


def _bounded(watermark: datetime | None, now: datetime) -> datetime | None:
    """A watermark is never later than its arrival: a fast sidecar clock cannot
    declare the future complete. Naive times are read as UTC."""
    if watermark is None:
        return None
    if watermark.tzinfo is None:
        watermark = watermark.replace(tzinfo=now.tzinfo)
    return min(watermark, now)


# --- 4. store ------------------------------------------------------------------


@dataclass(frozen=True)
class _Reserved:
    run_id: uuid.UUID | None
    first: int | None
    kept: int
    running: bool
    cap: int


async def store(
    session: AsyncSession,
    *,
    token: SidecarRef,
    prepared: Prepared,
    target: Target,
    quota: IngestQuota,
    bus: LiveBus,
) -> IngestResult:
    """Write the batch in the caller's (write) transaction; see the module docstring.

    A repeated ``batch_id`` stores nothing and answers with the first answer's count.
    """
    now, total = prepared.received_at, len(prepared.rows)
    if total == 0:  # only a watermark: nothing to deduplicate, nothing to number
        await _upsert_status(session, token=token, last_event_at=None, prepared=prepared)
        return IngestResult(ok=True, accepted=0, dropped=0, run_active=target.running)
    claim = await _claim(session, token=token, prepared=prepared)
    if claim is None:
        return await _duplicate(session, token=token, batch_id=prepared.batch_id)
    reserved = await _reserve(session, target=target, count=total, quota=quota)
    rows = prepared.rows[: reserved.kept]
    if reserved.run_id is not None and reserved.first is not None:
        run_value = prepared.run_value(reserved.run_id)
        for offset, row in enumerate(rows):
            row[_RUN], row[_SEQ] = run_value, reserved.first + offset
    if rows:
        await bulk_insert(session, rows)
    if reserved.kept < total:
        await session.execute(
            update(_BATCHES)
            .where(_BATCHES.c.id == claim)
            .values(accepted=reserved.kept, dropped=total - reserved.kept)
        )
    await _count_token(session, token=token, accepted=reserved.kept, now=now)
    await quota.count_stored(
        session, org_id=token.org_id, events=len(rows), chars=sum(prepared.sizes[: len(rows)])
    )
    await _upsert_status(session, token=token, last_event_at=now, prepared=prepared)
    running = reserved.running
    if reserved.run_id is not None and reserved.first is not None:
        if "policy.violation" in prepared.types[: len(rows)]:
            await _policy_steps(session, bus=bus, run_id=reserved.run_id, prepared=prepared,
                                first=reserved.first, kept=reserved.kept)  # fmt: skip
        last = reserved.first + reserved.kept - 1
        if last >= reserved.cap * WARN_AT:
            stopped = await quota.after_run_events(
                session, run_id=reserved.run_id, stored=last, cap=reserved.cap
            )
            running = running and not stopped
    return IngestResult(
        ok=True, accepted=reserved.kept, dropped=total - reserved.kept, run_active=running
    )


def _insert_or_nothing(session: AsyncSession, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _claim(
    session: AsyncSession, *, token: SidecarRef, prepared: Prepared
) -> uuid.UUID | None:
    """Insert the batch marker; None when this batch_id was already stored.

    A concurrent twin waits on the unique index until the first commits (then
    it is a duplicate) or rolls back (then it goes ahead).
    """
    values = {
        "id": uuid.uuid4(), "org_id": token.org_id, "project_id": token.project_id,
        "batch_id": prepared.batch_id, "accepted": len(prepared.rows), "dropped": 0,
        "received_at": prepared.received_at,
    }  # fmt: skip
    statement = (
        _insert_or_nothing(session, _BATCHES)
        .values(values)
        .on_conflict_do_nothing(index_elements=["project_id", "batch_id"])
        .returning(_BATCHES.c.id)
    )
    claimed: uuid.UUID | None = await session.scalar(statement)
    return claimed


async def _duplicate(session: AsyncSession, *, token: SidecarRef, batch_id: str) -> IngestResult:
    accepted = await session.scalar(
        select(_BATCHES.c.accepted).where(
            _BATCHES.c.project_id == token.project_id, _BATCHES.c.batch_id == batch_id
        )
    )
    return IngestResult(ok=True, accepted=int(accepted or 0), dropped=0, duplicate=True)


async def _reserve(
    session: AsyncSession, *, target: Target, count: int, quota: IngestQuota
) -> _Reserved:
    """The batch's seq range: gap-free, row-locked until commit, within the run's cap.

    The common case is one statement. When it matches no row (the cap is near,
    or the running run ended since it was read) the run is locked and looked at.
    """
    if target.run_id is None:
        return _Reserved(None, None, count, False, 0)
    conditions = [_RUNS.c.id == target.run_id, _RUNS.c.last_seq + count <= target.cap]
    if not target.named:
        conditions.append(_RUNS.c.status == RunStatus.running.value)
    last = await session.scalar(
        update(_RUNS)
        .where(*conditions)
        .values(last_seq=_RUNS.c.last_seq + count)
        .returning(_RUNS.c.last_seq)
    )
    if last is not None:
        return _Reserved(target.run_id, int(last) - count + 1, count, target.running, target.cap)
    return await _reserve_slowly(session, target=target, count=count, quota=quota)


async def _reserve_slowly(
    session: AsyncSession, *, target: Target, count: int, quota: IngestQuota
) -> _Reserved:
    query = select(_RUNS.c.id, _RUNS.c.last_seq, _RUNS.c.status, _RUNS.c.config)
    if target.named:
        query = query.where(_RUNS.c.id == target.run_id)
    else:  # the run read earlier may have ended; attach to whichever runs now
        project = select(_RUNS.c.project_id).where(_RUNS.c.id == target.run_id)
        query = query.where(
            _RUNS.c.project_id == project.scalar_subquery(),
            _RUNS.c.status == RunStatus.running.value,
        ).order_by(_RUNS.c.started_at.desc())
    row = (await session.execute(query.limit(1).with_for_update())).first()
    if row is None:
        return _Reserved(None, None, count, False, 0)
    cap = quota.cap(row.config, target.limits) if target.limits is not None else 0
    room = max(0, min(count, cap - int(row.last_seq)))
    if room:
        await session.execute(
            update(_RUNS).where(_RUNS.c.id == row.id).values(last_seq=_RUNS.c.last_seq + room)
        )
    running = row.status == RunStatus.running.value
    return _Reserved(row.id, int(row.last_seq) + 1 if room else None, room, running, cap)


async def bulk_insert(session: AsyncSession, rows: Sequence[Sequence[Any]]) -> None:
    """Prepared rows (in :data:`COLUMNS` order) through the driver's bulk path:
    asyncpg ``COPY`` on PostgreSQL, one ``executemany`` on SQLite, inside the
    session's transaction."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "postgresql":
        if driver is None or not driver.is_in_transaction():
            raise RuntimeError("bulk insert outside a transaction")
        await driver.copy_records_to_table(_EVENTS.name, records=rows, columns=COLUMNS)
    else:
        assert driver is not None
        await driver.executemany(SQLITE_INSERT, rows)


async def _count_token(
    session: AsyncSession, *, token: SidecarRef, accepted: int, now: datetime
) -> None:
    """Count the events on the token; a token revoked since the batch began is a 403."""
    counted = await session.scalar(
        update(_TOKENS)
        .where(_TOKENS.c.id == token.id, _TOKENS.c.status == TokenStatus.active.value)
        .values(events_accepted=_TOKENS.c.events_accepted + accepted, last_seen_at=now)
        .returning(_TOKENS.c.id)
    )
    if counted is None:
        raise Forbidden("sidecar token revoked", reason="token_revoked")


async def _upsert_status(
    session: AsyncSession,
    *,
    token: SidecarRef,
    last_event_at: datetime | None,
    prepared: Prepared,
) -> None:
    """The sending process's status row in one statement: made on first use, the
    watermark only ever moves forward (a retried older batch never moves it back)."""
    statement = _insert_or_nothing(session, _STATUS).values(
        token_id=token.id, instance_id=prepared.instance, org_id=token.org_id,
        project_id=token.project_id, sidecar_version="", counters={},
        last_event_at=last_event_at, watermark=prepared.watermark,
    )  # fmt: skip
    current, offered = _STATUS.c.watermark, statement.excluded.watermark
    changes: dict[str, Any] = {
        "watermark": case(
            (and_(offered.is_not(None), (current.is_(None)) | (offered > current)), offered),
            else_=current,
        )
    }
    if last_event_at is not None:
        changes["last_event_at"] = statement.excluded.last_event_at
    await session.execute(
        statement.on_conflict_do_update(index_elements=["token_id", "instance_id"], set_=changes)
    )


async def _policy_steps(
    session: AsyncSession,
    *,
    bus: LiveBus,
    run_id: uuid.UUID,
    prepared: Prepared,
    first: int,
    kept: int,
) -> None:
    """Story steps for the batch's policy violations, evidence as on replay."""
    from cogumi.engine.story import build_story
    from cogumi.runs import service as runs_service

    run = await session.get(Run, run_id)
    assert run is not None
    events: list[dict[str, Any]] = [
        {"id": str(uuid.UUID(hex=prepared.ids[i])), "seq": first + i, "type": prepared.types[i],
         "ts": prepared.timestamps[i], "payload_redacted": prepared.payloads[i]}
        for i in range(kept)
    ]  # fmt: skip
    previous = await session.scalar(
        select(Event)
        .where(
            Event.run_id == run_id,
            Event.seq < first,
            Event.type.not_in(("marker", "policy.violation")),
        )
        .order_by(Event.seq.desc())
        .limit(1)
    )
    context: list[dict[str, Any]] = (
        [{"id": str(previous.id), "seq": previous.seq, "type": previous.type}] if previous else []
    )
    violations = {e["id"] for e in events if e["type"] == "policy.violation"}
    for step in build_story(context + events):
        if step.evidence_event_ids[-1] not in violations:
            continue
        await runs_service.add_story_step(
            session, bus=bus, run=run, step_kind=step.step_kind, claim_title=step.claim_title,
            claim_summary=step.claim_summary, severity=step.severity, status=step.status,
            evidence_event_ids=step.evidence_event_ids, seq_start=step.seq_start,
            seq_end=step.seq_end, ts=step.ts,
        )  # fmt: skip
