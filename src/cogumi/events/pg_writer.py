"""PostgreSQL writes of a run's batch groups, in a process of their own beside ``serve``.

Concurrent batches into one run are written in groups, one group of a run at a
time (:mod:`cogumi.events.ingest_fast`): claim, ``seq`` reservation, ``COPY``,
counters, commit. That stage is what bounds a run's ingest, and inside
``serve`` it waited for the event loop: each statement's answer, and each part
of the ``COPY`` the driver encodes, waited behind the callbacks of the other
requests (decoding and preparing their batches), so the database sat idle for
about a third of every group (docs/performance.md, *PostgreSQL with one
process*). Here the stage runs on an event loop that does nothing else, and the
driver's encoding of the rows leaves ``serve``'s core.

``serve``'s event loop sends a group, already prepared, over a socket pair
(:class:`cogumi.events.sqlite_writer.WriterClient`: 4-byte length, msgpack body)
and awaits the answer. Groups of different runs are written at once, each on a
connection of the writer's pool. A group that cannot be written together (a
revoked token, the quota warning, a run that ended, any error) leaves nothing,
and its batches are written alone by ``serve``, as before. Answers go back after
the commit; a writer that dies first costs its senders a 503 and a retry, which
finds its ``batch_id`` claimed if the commit happened.

The connection settings, password included, arrive in the first frame, never in
the process's arguments. The writer stops when its socket closes (``serve``
stopped or died), after finishing the groups in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import uuid
from typing import Any, Final

import asyncpg

from cogumi.events.sqlite_writer import frame, take_frames

POOL_SIZE: Final = 8
"""Connections of the writer at most (fewer when the engine keeps fewer): groups of as
many runs are written at once."""

CONNECT_TIMEOUT_SEC: Final = 10.0
"""How long the writer waits for a connection (asyncpg's own default is 60 s). A group
that cannot get one goes alone in serve, so a database the writer cannot reach costs
a group this long, not a minute."""

CLAIM_MANY: Final = (
    "INSERT INTO ingest_batches (id, org_id, project_id, batch_id, accepted, dropped, "
    "received_at) SELECT id, $2, $3, batch_id, accepted, 0, received_at "
    "FROM unnest($1::uuid[], $4::text[], $5::int[], $6::timestamptz[]) "
    "AS b(id, batch_id, accepted, received_at) ORDER BY batch_id "
    "ON CONFLICT (project_id, batch_id) DO NOTHING RETURNING batch_id"
)
"""In ``batch_id`` order: two groups holding the same retried batches (two ``serve``
processes) wait on each other in one order, never in a cycle."""
STORED: Final = "SELECT accepted FROM ingest_batches WHERE project_id = $1 AND batch_id = $2"
RESERVE: Final = (
    "UPDATE runs SET last_seq = last_seq + $2 WHERE id = $1 AND last_seq + $2 < $3 "
    "AND (status = 'running' OR $4) RETURNING last_seq"
)
COUNT: Final = """
WITH token AS (
    UPDATE sidecar_tokens SET events_accepted = events_accepted + $1, last_seen_at = $2
    WHERE id = $3 AND status = 'active' RETURNING id
), storage AS (
    UPDATE org_quotas SET stored_events = stored_events + $4, stored_event_bytes =
    stored_event_bytes + $5 WHERE org_id = $6 RETURNING id
), status AS (
    INSERT INTO sidecar_status AS s (token_id, instance_id, org_id, project_id, sidecar_version,
        counters, last_event_at, watermark)
    VALUES ($3, $9, $6, $7, '', '{}', $2, $8)
    ON CONFLICT (token_id, instance_id) DO UPDATE SET last_event_at = excluded.last_event_at,
        watermark = CASE WHEN excluded.watermark IS NOT NULL AND (s.watermark IS NULL
            OR excluded.watermark > s.watermark) THEN excluded.watermark ELSE s.watermark END
    RETURNING token_id
)
SELECT (SELECT count(*) FROM token), (SELECT count(*) FROM storage), (SELECT count(*) FROM status)
"""
"""Token, storage and status counters in one round trip; the counts say whether the
token is still active and whether the org's quota row exists yet."""
QUOTA_ROW: Final = (
    "INSERT INTO org_quotas (id, org_id, stored_events, stored_event_bytes, updated_at) "
    "VALUES ($1, $2, 0, 0, $3) ON CONFLICT (org_id) DO NOTHING"
)
STORE: Final = (
    "UPDATE org_quotas SET stored_events = stored_events + $1, stored_event_bytes = "
    "stored_event_bytes + $2 WHERE org_id = $3"
)

# A group request (built by ingest_fast._group_request):
#   {"org", "project", "run", "run_value", "named", "warn_at", "run_index",
#    "seq_index", "columns", "batches": [[batch_id, count, received_at, token,
#    instance, watermark, chars, claim_id], ...], "rows": [every batch's rows, in order]}
BATCH_ID, COUNT_AT, RECEIVED, TOKEN, INSTANCE, WATERMARK, CHARS, CLAIM = range(8)


class LeaveGroup(Exception):
    """Raised inside a group's transaction to roll it back: its batches go alone."""


async def write_group(db: Any, r: dict[str, Any]) -> list[list[Any]]:
    """Write the group in one transaction; ``[accepted, duplicate]`` per batch."""
    batches, org, project = r["batches"], r["org"], r["project"]
    async with db.transaction():
        claimed = {
            row[0]
            for row in await db.fetch(
                CLAIM_MANY, [b[CLAIM] for b in batches], org, project,
                [b[BATCH_ID] for b in batches], [b[COUNT_AT] for b in batches],
                [b[RECEIVED] for b in batches],
            )
        }  # fmt: skip
        rows: list[list[Any]] = r["rows"]
        fresh, copy, start = [], [], 0
        for b in batches:
            if b[BATCH_ID] in claimed:
                fresh.append(b)
                copy += rows[start : start + b[COUNT_AT]]
            start += b[COUNT_AT]
        if fresh:
            total = len(copy)
            last = await db.fetchval(RESERVE, r["run"], total, r["warn_at"], r["named"])
            if last is None:
                raise LeaveGroup
            run_value, run_index, seq_index = r["run_value"], r["run_index"], r["seq_index"]
            for seq, row in enumerate(copy, start=int(last) - total + 1):
                row[run_index], row[seq_index] = run_value, seq
            await db.copy_records_to_table("events", records=copy, columns=r["columns"])
            by_sender: dict[tuple[str, str], list[list[Any]]] = {}
            for b in fresh:
                by_sender.setdefault((b[TOKEN], b[INSTANCE]), []).append(b)
            for sender in sorted(by_sender):  # one order for every transaction
                await _count(db, org, project, by_sender[sender])
        answers = []
        for b in batches:
            if b[BATCH_ID] in claimed:
                answers.append([b[COUNT_AT], False])
                continue
            accepted = await db.fetchval(STORED, project, b[BATCH_ID])
            answers.append([int(accepted or 0), True])
    return answers


async def _count(db: Any, org: str, project: str, batches: list[list[Any]]) -> None:
    """The token, storage and status counters for the batches one sidecar process
    (token and instance) sent."""
    count = sum(b[COUNT_AT] for b in batches)
    chars = sum(b[CHARS] for b in batches)
    seen = max(b[RECEIVED] for b in batches)
    marks = [b[WATERMARK] for b in batches if b[WATERMARK] is not None]
    first = batches[0]
    token, storage, _ = await db.fetchrow(
        COUNT, count, seen, first[TOKEN], count, chars, org, project,
        max(marks) if marks else None, first[INSTANCE],
    )  # fmt: skip
    if not token:  # revoked meanwhile: each batch alone gets its 403
        raise LeaveGroup
    if not storage:  # the org's first counted batch
        await db.execute(QUOTA_ROW, uuid.uuid4(), org, seen)
        await db.execute(STORE, count, chars, org)


# --- the writer's process ------------------------------------------------------------


class Writer(asyncio.Protocol):
    """Reads the configuration, then requests; writes each group on a pooled connection
    and answers ``[ident, kind, value]``: ``ok`` with the per-batch answers, ``alone``
    (nothing written: each batch goes alone) with the reason."""

    def __init__(self) -> None:
        self._config: dict[str, Any] | None = None
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._pool: asyncio.Future[asyncpg.Pool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for message in take_frames(self._buffer):
            if self._config is None:
                self._config = message
                continue
            ident, request = message
            task = asyncio.get_running_loop().create_task(self._answer(ident, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    async def _answer(self, ident: int, request: dict[str, Any]) -> None:
        try:
            pool = await self._connected()
            async with pool.acquire() as db:
                answer = [ident, "ok", await write_group(db, request)]
        except LeaveGroup:
            answer = [ident, "alone", "left"]
        except Exception as exc:  # the group's batches go alone, each to its own answer
            answer = [ident, "alone", f"{type(exc).__name__}: {exc}"]
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(frame(answer))

    async def _connected(self) -> asyncpg.Pool:
        """The pool, made on first use and again after a failed start."""
        if self._pool is None or (self._pool.done() and self._pool.exception() is not None):
            assert self._config is not None
            settings = {**self._config["connect"], "timeout": self._config["connect_timeout"]}
            self._pool = asyncio.ensure_future(
                asyncpg.create_pool(
                    min_size=1, max_size=self._config["pool_size"], reset=_no_reset, **settings
                )
            )
        return await asyncio.shield(self._pool)

    async def finish(self) -> None:
        """The groups in hand are written, then the pool closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._pool is not None and self._pool.done() and self._pool.exception() is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.result().close(), 5)


async def _no_reset(_connection: Any) -> None:
    """A group leaves no session state (no ``SET``, ``LISTEN``, cursor or advisory
    lock), so the pool's default reset, a round trip per group, is skipped. A
    connection given back inside a transaction is still rolled back by the pool."""


async def serve(sock: socket.socket) -> None:
    writer = Writer()
    transport, _ = await asyncio.get_running_loop().create_unix_connection(
        lambda: writer, sock=sock
    )
    try:
        await writer.closed
        await writer.finish()
    finally:
        transport.abort()


def main(argv: list[str]) -> int:
    # As the SQLite writer: signals meant for the service are ignored; the writer
    # stops when serve's end of its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed where it builds
        asyncio.run(serve(sock))
    else:
        uvloop.run(serve(sock))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
