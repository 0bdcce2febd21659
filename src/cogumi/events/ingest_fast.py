"""The driver-level fast path of ingest, one implementation per database.

The general path (:func:`cogumi.events.ingest.store`, SQLAlchemy) handles every
case; this one handles the common case with a handful of hand-written
statements on the driver itself, because at a few hundred batches a second
the statement machinery and, on SQLite, the driver's thread cost more than
the rows:

- **PostgreSQL** (asyncpg): the token, run and quota reads, then one
  transaction: claim the batch (insert-or-nothing), reserve the seq range
  (one conditional ``UPDATE … RETURNING``), ``COPY`` the rows, and one
  statement for the token, storage and sidecar status counters.
- **SQLite** (stdlib ``sqlite3``): the reads on a connection of our own,
  synchronously on the event loop's thread (WAL: readers never wait); the
  write in a writer process of its own (:mod:`cogumi.events.sqlite_writer`),
  which runs the same statements and commits the batches that arrive together
  in one transaction. The event loop prepares the next batches meanwhile, so
  one ``serve`` process uses a second core for SQLite's own work. (The async
  driver's worker thread cannot do that: it hands the interpreter lock back and
  forth for every row and statement while the loop is busy parsing other
  batches; a 200-row write took 20 times longer than alone.)

On PostgreSQL, concurrent batches into the same run are written together:
while one transaction of the run is in flight, the batches that arrive wait,
and the next of them writes them all in one transaction (one claim statement,
one seq reservation, one ``COPY``, one counter statement per token, one
commit), which takes the run's row lock once instead of once per batch. Each
batch gets the answer it would have got alone; when anything about the group
fails (a revoked token, the quota warning, an error), the group's transaction
rolls back and each of its batches is written alone, as before.

A batch whose reservation would take its run to the quota warning (80% of
its events cap) or past it, or that carries a policy violation (a live story
step), leaves the fast path before anything is written (its transaction rolls
back) and is stored by the general path, which publishes to the live stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from types import SimpleNamespace
from typing import Any, Protocol, cast

from sqlalchemy import Table, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from cogumi.errors import Forbidden, Unauthenticated
from cogumi.events import pg_writer, sqlite_writer
from cogumi.events.ingest import (
    COLUMNS,
    SQLITE_INSERT,
    Batch,
    Prepared,
    RunRow,
    SidecarRef,
    Target,
    check_project,
    target_for,
)
from cogumi.events.models import IngestBatch, SidecarStatus
from cogumi.events.schemas import IngestResult
from cogumi.projects.models import SidecarToken
from cogumi.quotas.ingest import IngestQuota
from cogumi.quotas.models import OrgQuota
from cogumi.tasks import spawn
from cogumi.tenancy import security

_BUSY_WAIT_SEC = 10.0  # as long as the engine's busy_timeout
_BEGIN_WRITE = "BEGIN IMMEDIATE"  # how the engine starts a write transaction on SQLite
CHECKPOINT_EVERY = 10  # SQLite write transactions between WAL checkpoints (a few MB of WAL)
log = logging.getLogger(__name__)


class FastPath(Protocol):
    def connect(self) -> contextlib.AbstractAsyncContextManager[FastConnection]: ...


class FastConnection(Protocol):
    async def authenticate(self, token: str) -> SidecarRef: ...

    async def find_target(self, ref: SidecarRef, batch: Batch, quota: IngestQuota) -> Target: ...

    async def write(
        self, ref: SidecarRef, prepared: Prepared, target: Target
    ) -> IngestResult | None:
        """Store the batch, or None (nothing written) when the general path must."""
        ...


_paths: weakref.WeakKeyDictionary[Engine, FastPath | None] = weakref.WeakKeyDictionary()


def fast_path(engine: AsyncEngine) -> FastPath | None:
    """The engine's fast path (made once), or None where there is none (in-memory SQLite)."""
    sync = engine.sync_engine
    if sync not in _paths:
        _paths[sync] = _make(engine)
    return _paths[sync]


def _make(engine: AsyncEngine) -> FastPath | None:
    if engine.dialect.name == "postgresql":
        pg = PostgresFastPath(engine)
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: pg.close())
        return pg
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        return None
    path = SqliteFastPath(database, engine.dialect)
    sync = engine.sync_engine
    event.listen(sync, "engine_disposed", lambda _engine: path.close())
    # The engine's write transactions wait for SQLite's lock inside the driver, polling
    # at growing intervals; a fast path that takes the lock whenever it is free could
    # starve them. So their BEGIN IMMEDIATE is watched, and ingest lets them go first.
    event.listen(sync, "before_cursor_execute", path.writer_waits)
    event.listen(sync, "after_cursor_execute", path.writer_began)
    event.listen(sync, "handle_error", lambda context: path.writer_began(context.connection))
    return path


def _unauthenticated() -> Unauthenticated:
    return Unauthenticated("invalid sidecar token")


def _check_token(token: str, row: Sequence[Any] | None) -> Sequence[Any]:
    """``row`` starts (status, token_hash) of the token's prefix; same answers as the
    general path (401 unknown, 403 revoked)."""
    if row is None or not security.token_matches(token, row[1]):
        raise _unauthenticated()
    if row[0] != "active":
        raise Forbidden("sidecar token revoked", reason="token_revoked")
    return row


def _quota_row(names: Sequence[str], values: Sequence[Any] | None) -> Any:
    return SimpleNamespace(**dict(zip(names, values, strict=True))) if values else None


_QUOTA_COLUMNS = tuple(c.name for c in cast(Table, OrgQuota.__table__).columns)


# --- PostgreSQL ----------------------------------------------------------------


_PG_TOKEN = (
    "SELECT status, token_hash, id, org_id, project_id FROM sidecar_tokens WHERE prefix = $1"
)
_PG_QUOTA = f"SELECT {', '.join(_QUOTA_COLUMNS)} FROM org_quotas WHERE org_id = $1"  # noqa: S608 - fixed names
_PG_RUN_COLUMNS = "id, status, config -> 'quota' ->> 'events_per_run'"
_PG_RUN_NAMED = f"SELECT {_PG_RUN_COLUMNS} FROM runs WHERE project_id = $1 AND id = $2"  # noqa: S608 - fixed names
_PG_RUN_RUNNING = (
    f"SELECT {_PG_RUN_COLUMNS} FROM runs WHERE project_id = $1 AND status = 'running' "  # noqa: S608 - fixed names
    "ORDER BY started_at DESC LIMIT 1"
)
_PG_CLAIM = (
    "INSERT INTO ingest_batches (id, org_id, project_id, batch_id, accepted, dropped, "
    "received_at) VALUES ($1, $2, $3, $4, $5, 0, $6) "
    "ON CONFLICT (project_id, batch_id) DO NOTHING RETURNING id"
)
_PG_WATERMARK = """
INSERT INTO sidecar_status AS s (token_id, instance_id, org_id, project_id, sidecar_version,
    counters, watermark)
VALUES ($1, $5, $2, $3, '', '{}', $4)
ON CONFLICT (token_id, instance_id) DO UPDATE SET watermark = CASE WHEN excluded.watermark IS NOT NULL
    AND (s.watermark IS NULL OR excluded.watermark > s.watermark)
    THEN excluded.watermark ELSE s.watermark END
"""


class _LeaveFastPath(Exception):
    """Raised inside the fast transaction to roll it back and hand over."""


class PostgresFastPath:
    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[FastConnection]:
        """One pooled connection for the request; transactions are the driver's own."""
        async with self._engine.connect() as connection:
            raw = await connection.get_raw_connection()
            yield _PostgresConnection(raw.driver_connection, self._groups, self.writer)

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._groups = _RunGroups()
        # The writer connects as the engine does (the dialect's own reading of the URL).
        _args, settings = engine.dialect.create_connect_args(engine.url)
        self.writer = sqlite_writer.WriterClient(
            [],
            {"connect": {k: v for k, v in settings.items() if k in _ASYNCPG_CONNECT},
             "pool_size": _writer_pool_size(engine),
             "connect_timeout": pg_writer.CONNECT_TIMEOUT_SEC},
            module=pg_writer.__name__,
        )  # fmt: skip

    def close(self) -> None:
        self.writer.close()


def _writer_pool_size(engine: AsyncEngine) -> int:
    """The writer's connections: as many as the engine keeps (``COGUMI_DATABASE_POOL_SIZE``,
    so an operator who lowers it lowers both), at most :data:`pg_writer.POOL_SIZE`."""
    size = getattr(engine.sync_engine.pool, "size", None)
    kept = size() if callable(size) else pg_writer.POOL_SIZE
    return max(1, min(pg_writer.POOL_SIZE, int(kept)))


_ASYNCPG_CONNECT = frozenset(
    ("dsn", "host", "port", "user", "password", "passfile", "service", "servicefile",
     "database", "timeout", "statement_cache_size", "max_cached_statement_lifetime",
     "max_cacheable_statement_size", "command_timeout", "ssl", "direct_tls",
     "server_settings", "target_session_attrs", "krbsrvname", "gsslib")
)  # fmt: skip
"""``asyncpg.connect``'s settings that a URL can carry (the dialect's own, such as
``prepared_statement_cache_size``, are not asyncpg's)."""


class _PostgresConnection:
    def __init__(
        self,
        driver: Any,
        groups: _RunGroups | None = None,
        writer: sqlite_writer.WriterClient | None = None,
    ) -> None:
        self._db = driver
        self._groups = groups
        self._writer = writer

    async def authenticate(self, token: str) -> SidecarRef:
        prefix = security.split_prefixed_token(token, "cgs")
        row = await self._db.fetchrow(_PG_TOKEN, prefix) if prefix is not None else None
        ids = _check_token(token, row)[2:]
        return SidecarRef(*(uuid.UUID(str(value)) for value in ids))

    async def find_target(self, ref: SidecarRef, batch: Batch, quota: IngestQuota) -> Target:
        check_project(ref, batch)
        limits = None
        if batch.events:
            values = await self._db.fetchrow(_PG_QUOTA, ref.org_id)
            limits = quota.check_row(_quota_row(_QUOTA_COLUMNS, values))
        if batch.run_id is not None:
            row = await self._db.fetchrow(_PG_RUN_NAMED, ref.project_id, batch.run_id)
        else:
            row = await self._db.fetchrow(_PG_RUN_RUNNING, ref.project_id)
        return target_for(batch, _run_row(row), limits)

    async def write(
        self, ref: SidecarRef, prepared: Prepared, target: Target
    ) -> IngestResult | None:
        if not prepared.rows:
            await self._db.execute(
                _PG_WATERMARK, ref.id, ref.org_id, ref.project_id, prepared.watermark,
                prepared.instance,
            )  # fmt: skip
            return IngestResult(ok=True, accepted=0, dropped=0, run_active=target.running)
        if prepared.has_violations:
            return None
        if self._groups is not None and target.run_id is not None:
            return await self._groups.write(self, _Pending(ref, prepared, target))
        return await self.write_alone(ref, prepared, target)

    async def write_alone(
        self, ref: SidecarRef, prepared: Prepared, target: Target
    ) -> IngestResult | None:
        try:
            async with self._db.transaction():
                return await self._store(ref, prepared, target)
        except _LeaveFastPath:
            return None

    async def write_group(self, group: list[_Pending]) -> None:
        """Write ``group`` (batches of one run) in one transaction, in the writer process,
        and answer each; if that cannot be done, write each alone (its own answer or
        error). A writer that stopped fails the group (503: the senders retry)."""
        assert self._writer is not None
        kind, value = await self._writer.call(_group_request(group))
        if kind == "ok":
            for item, (accepted, duplicate) in zip(group, value, strict=True):
                if duplicate:
                    item.answer(IngestResult(ok=True, accepted=accepted, dropped=0, duplicate=True))
                else:
                    item.answer(IngestResult(ok=True, accepted=accepted, dropped=0,
                                             run_active=item.target.running))  # fmt: skip
            return
        for item in group:
            try:
                item.answer(await self.write_alone(item.ref, item.prepared, item.target))
            except Exception as exc:  # handed to the batch's own request
                item.fail(exc)

    async def _store(self, ref: SidecarRef, prepared: Prepared, target: Target) -> IngestResult:
        db, count = self._db, len(prepared.rows)
        claimed = await db.fetchval(
            _PG_CLAIM, uuid.uuid4(), ref.org_id, ref.project_id, prepared.batch_id, count,
            prepared.received_at,
        )  # fmt: skip
        if claimed is None:
            accepted = await db.fetchval(pg_writer.STORED, ref.project_id, prepared.batch_id)
            return IngestResult(ok=True, accepted=int(accepted or 0), dropped=0, duplicate=True)
        if target.run_id is not None:
            last = await db.fetchval(
                pg_writer.RESERVE, target.run_id, count, target.warn_at, target.named
            )
            if last is None:
                raise _LeaveFastPath
            _number(prepared, target.run_id, int(last) - count + 1)
        await db.copy_records_to_table("events", records=prepared.rows, columns=COLUMNS)
        chars = sum(prepared.sizes)
        token, storage, _ = await db.fetchrow(
            pg_writer.COUNT, count, prepared.received_at, ref.id, count, chars, ref.org_id,
            ref.project_id, prepared.watermark, prepared.instance,
        )  # fmt: skip
        if not token:
            raise Forbidden("sidecar token revoked", reason="token_revoked")
        if not storage:  # the org's first counted batch
            await db.execute(pg_writer.QUOTA_ROW, uuid.uuid4(), ref.org_id, prepared.received_at)
            await db.execute(pg_writer.STORE, count, chars, ref.org_id)
        return IngestResult(ok=True, accepted=count, dropped=0, run_active=target.running)


_LEAD = object()
"""Handed to a waiting batch: write the next group of its run yourself."""
GROUP_MAX_BATCHES = 4
"""Batches per group at most. A group that took every waiting batch made the senders
move in step: while it was written nothing was left to prepare, and while the next
batches were prepared the database had nothing to write. Four leaves the batches that
arrive meanwhile to be prepared while a group is written (docs/performance.md: 8
senders, 10.1k -> 11.7k events/s median against 16)."""


class _Pending:
    """A batch waiting to be written with others of its run."""

    __slots__ = ("done", "prepared", "ref", "target")

    def __init__(self, ref: SidecarRef, prepared: Prepared, target: Target) -> None:
        self.ref, self.prepared, self.target = ref, prepared, target
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def answer(self, result: IngestResult | None) -> None:
        if not self.done.done():
            self.done.set_result(result)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class _RunGroups:
    """Per run: the batches waiting, and whether a group of them is being written.

    The first batch of an idle run is written at once (a group of one). Batches
    that arrive meanwhile wait; when a group is written, the first waiting batch
    is told to lead and starts the next group: every waiting batch, up to
    :data:`GROUP_MAX_BATCHES`, each ``batch_id`` at most once. A group is written
    on the leading request's connection (every waiting request holds one
    already, so a group never needs another and cannot exhaust the pool); the
    leading request does not let a cancellation go through until the group is
    written, so its connection is never returned to the pool while in use."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, list[_Pending]] = {}
        self._writing: set[uuid.UUID] = set()

    async def write(self, conn: _PostgresConnection, item: _Pending) -> IngestResult | None:
        run_id = cast(uuid.UUID, item.target.run_id)
        self._waiting.setdefault(run_id, []).append(item)
        if run_id in self._writing:
            try:
                outcome = await item.done
            except asyncio.CancelledError:
                if _led(item):  # told to lead but cancelled first: pass it on
                    self._waiting[run_id].remove(item)
                    self._hand_on(run_id)
                raise
            if outcome is not _LEAD:
                return cast(IngestResult | None, outcome)
            item.done = asyncio.get_running_loop().create_future()
        else:
            self._writing.add(run_id)
        writing = spawn(self._write(conn, run_id, self._take(run_id)))
        cancelled = False
        while not writing.done():
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                cancelled = True  # held until the group no longer uses this connection
        if cancelled:
            raise asyncio.CancelledError
        return cast(IngestResult | None, item.done.result())

    def _take(self, run_id: uuid.UUID) -> list[_Pending]:
        """The next group, led by the first waiting batch (the caller's)."""
        waiting = self._waiting[run_id]
        lead, group, batch_ids = waiting[0], list[_Pending](), set[str]()
        for item in list(waiting):
            if len(group) >= GROUP_MAX_BATCHES:
                break
            if item.done.cancelled():
                waiting.remove(item)
            elif item.prepared.batch_id not in batch_ids and item.target.named == lead.target.named:
                batch_ids.add(item.prepared.batch_id)
                group.append(item)
                waiting.remove(item)
        return group

    async def _write(self, conn: _PostgresConnection, run_id: uuid.UUID, group: list[_Pending]) -> None:  # fmt: skip
        try:
            await conn.write_group(group)
        except BaseException as exc:  # every batch of the group gets told
            for item in group:
                item.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._hand_on(run_id)

    def _hand_on(self, run_id: uuid.UUID) -> None:
        waiting = self._waiting.get(run_id, [])
        while waiting:
            if waiting[0].done.cancelled():
                waiting.pop(0)
                continue
            waiting[0].done.set_result(_LEAD)
            return
        self._waiting.pop(run_id, None)
        self._writing.discard(run_id)


def _led(item: _Pending) -> bool:
    done = item.done
    return (
        done.done()
        and not done.cancelled()
        and done.exception() is None
        and (done.result() is _LEAD)
    )


def _group_request(group: list[_Pending]) -> dict[str, Any]:
    """What the writer process needs for ``group`` (pg_writer.write_group)."""
    first = group[0]
    run_id = cast(uuid.UUID, first.target.run_id)
    return {
        "org": first.ref.org_id, "project": first.ref.project_id, "run": run_id,
        "run_value": first.prepared.run_value(run_id), "named": first.target.named,
        "warn_at": min(item.target.warn_at for item in group),
        "run_index": _RUN_INDEX, "seq_index": _SEQ_INDEX, "columns": COLUMNS,
        "batches": [
            [item.prepared.batch_id, len(item.prepared.rows), item.prepared.received_at,
             item.ref.id, item.prepared.instance, item.prepared.watermark,
             sum(item.prepared.sizes), uuid.uuid4()]
            for item in group
        ],
        "rows": [row for item in group for row in item.prepared.rows],
    }  # fmt: skip


_RUN_INDEX, _SEQ_INDEX = COLUMNS.index("run_id"), COLUMNS.index("seq")


def _run_row(row: Sequence[Any] | None) -> RunRow | None:
    if row is None:
        return None
    cap = row[2]
    snapshot = int(cap) if isinstance(cap, str | int) and str(cap).isdigit() else None
    return RunRow(uuid.UUID(str(row[0])), str(row[1]), snapshot if snapshot else None)


def _number(prepared: Prepared, run_id: uuid.UUID, first: int) -> None:
    run_value = prepared.run_value(run_id)
    for offset, row in enumerate(prepared.rows):
        row[_RUN_INDEX], row[_SEQ_INDEX] = run_value, first + offset


# --- SQLite --------------------------------------------------------------------


def _binder(dialect: Dialect, table: Table, column: str) -> Callable[[Any], Any]:
    process = table.c[column].type._cached_bind_processor(dialect)
    return process or (lambda value: value)


class SqliteFastPath:
    """One stdlib connection per database file and process, used from the loop's thread."""

    def __init__(self, database: str, dialect: Dialect) -> None:
        self._database = database
        self._db: sqlite3.Connection | None = None
        tokens, status = cast(Table, SidecarToken.__table__), cast(Table, SidecarStatus.__table__)
        batches = cast(Table, IngestBatch.__table__)
        self.uuid = _binder(dialect, batches, "id")
        self.time = _binder(dialect, batches, "received_at")
        self.token_time = _binder(dialect, tokens, "last_seen_at")
        self.status_time = _binder(dialect, status, "watermark")
        self.counters = _binder(dialect, status, "counters")({})
        # Engine connections waiting for the write lock, with when they started.
        self._waiting: dict[int, float] = {}
        self.writer = sqlite_writer.WriterClient(
            [database],
            {"insert": SQLITE_INSERT, "run_index": COLUMNS.index("run_id"),
             "seq_index": COLUMNS.index("seq"), "busy_sec": _BUSY_WAIT_SEC,
             "checkpoint_every": CHECKPOINT_EVERY},
        )  # fmt: skip

    def writer_waits(self, connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement == _BEGIN_WRITE:
            self._waiting[id(connection)] = time.monotonic()

    def writer_began(self, connection: Any, *_: Any) -> None:
        self._waiting.pop(id(connection), None)

    @property
    def writers_waiting(self) -> bool:
        """An engine write transaction is waiting for the lock (one that waited longer
        than the engine's busy timeout has given up, whatever was recorded)."""
        if not self._waiting:
            return False
        stale = time.monotonic() - _BUSY_WAIT_SEC - 1
        for key in [k for k, since in self._waiting.items() if since < stale]:
            del self._waiting[key]
        return bool(self._waiting)

    def _connection(self) -> sqlite3.Connection:
        """The loop's own connection, for the reads before a write (WAL: they never
        wait for the writer)."""
        if self._db is None:
            # Never wait inside the driver (that would block the loop): timeout 0, and no
            # journal_mode change (the engine made the file WAL; setting it can wait).
            db = sqlite3.connect(
                self._database, timeout=0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA foreign_keys=ON")
            self._db = db
        return self._db

    def close(self) -> None:
        self.writer.close()
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[FastConnection]:
        yield _SqliteConnection(self, self._connection())


_SQLITE_RUN_COLUMNS = "id, status, json_extract(config, '$.quota.events_per_run')"


class _SqliteConnection:
    def __init__(self, path: SqliteFastPath, db: sqlite3.Connection) -> None:
        self._path, self._db = path, db

    async def authenticate(self, token: str) -> SidecarRef:
        prefix = security.split_prefixed_token(token, "cgs")
        row = None
        if prefix is not None:
            row = self._db.execute(
                "SELECT status, token_hash, id, org_id, project_id FROM sidecar_tokens "
                "WHERE prefix = ?",
                (prefix,),
            ).fetchone()
        ids = _check_token(token, row)[2:]
        return SidecarRef(*(uuid.UUID(hex=value) for value in ids))

    async def find_target(self, ref: SidecarRef, batch: Batch, quota: IngestQuota) -> Target:
        check_project(ref, batch)
        limits = None
        if batch.events:
            values = self._db.execute(
                f"SELECT {', '.join(_QUOTA_COLUMNS)} FROM org_quotas WHERE org_id = ?",  # noqa: S608 - fixed names
                (ref.org_id.hex,),
            ).fetchone()
            limits = quota.check_row(_quota_row(_QUOTA_COLUMNS, values))
        if batch.run_id is not None:
            row = self._db.execute(
                f"SELECT {_SQLITE_RUN_COLUMNS} FROM runs WHERE project_id = ? AND id = ?",  # noqa: S608 - fixed names
                (ref.project_id.hex, batch.run_id.hex),
            ).fetchone()
        else:
            row = self._db.execute(
                f"SELECT {_SQLITE_RUN_COLUMNS} FROM runs WHERE project_id = ? "  # noqa: S608 - fixed names
                "AND status = 'running' ORDER BY started_at DESC LIMIT 1",
                (ref.project_id.hex,),
            ).fetchone()
        return target_for(batch, _run_row(row), limits)

    async def write(
        self, ref: SidecarRef, prepared: Prepared, target: Target
    ) -> IngestResult | None:
        if prepared.rows and prepared.has_violations:
            return None
        await self._engine_writers_first()
        kind, value = await self._path.writer.call(self._request(ref, prepared, target))
        if kind == "ok":
            accepted, duplicate = value
            if duplicate:
                return IngestResult(ok=True, accepted=accepted, dropped=0, duplicate=True)
            return IngestResult(ok=True, accepted=accepted, dropped=0, run_active=target.running)
        if kind == "general":
            return None
        if kind == "revoked":
            raise Forbidden("sidecar token revoked", reason="token_revoked")
        if "locked" in value or "busy" in value:
            raise sqlite_writer.WriterUnavailable(f"ingest store: {value}")
        raise sqlite3.OperationalError(value)

    async def _engine_writers_first(self) -> None:
        """The engine's waiting write transactions go before the next batch (the
        engine's driver waits inside SQLite's busy handler; a writer taking the lock
        whenever it is free could starve it)."""
        deadline, delay = time.monotonic() + _BUSY_WAIT_SEC, 0.0002
        while self._path.writers_waiting:
            if time.monotonic() > deadline:
                raise sqlite_writer.WriterUnavailable("ingest store: database is locked")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.004)  # a write holds the lock a few ms: look again soon

    def _request(self, ref: SidecarRef, prepared: Prepared, target: Target) -> dict[str, Any]:
        """Everything the writer needs, already bound for SQLite (sqlite_writer.Store)."""
        path, now, count = self._path, prepared.received_at, len(prepared.rows)
        run = target.run_id
        return {
            "count": count, "rows": prepared.rows, "batch_id": prepared.batch_id,
            "org": ref.org_id.hex, "project": ref.project_id.hex, "token": ref.id.hex,
            "claim_id": path.uuid(uuid.uuid4()), "quota_id": path.uuid(uuid.uuid4()),
            "received": path.time(now), "received_quota": path.time(now),
            "token_time": path.token_time(now), "chars": sum(prepared.sizes),
            "run": None if run is None else run.hex,
            "run_value": None if run is None else prepared.run_value(run),
            "warn_at": target.warn_at, "named": target.named,
            "instance": prepared.instance, "counters": path.counters,
            "seen": path.status_time(now) if count else None,
            "watermark": path.status_time(prepared.watermark) if prepared.watermark else None,
        }  # fmt: skip
