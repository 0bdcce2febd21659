"""SQLite ingest writes in a process of their own, beside ``serve``'s event loop.

On SQLite, one ``serve`` process used to read, check, prepare *and* write every
batch on one thread: the write (SQLite's own insert and commit work, ~30% of the
process's time under load) waited for the parsing and the parsing for the write.
A thread cannot take the write over: SQLite's driver gives the interpreter lock
back for every row and statement, and with the loop busy each hand-back waits up
to the interpreter's 5 ms switch interval. A process can: it holds an
interpreter of its own.

So the event loop prepares the rows and sends them, already bound, to a writer
process over a socket pair, and awaits the answer without blocking. The writer
stores each batch exactly as the loop did (claim the ``batch_id``, reserve the
``seq`` range, insert, count), and writes the batches that arrive together in
one transaction (group commit), each inside a savepoint of its own, so a batch
that must go to the general path, or whose token was revoked, leaves nothing
while the others of its group are stored. Answers go back after the commit.

Both ends are ours: frames are a 4-byte length and a msgpack body. This module
imports only the standard library and msgspec, so the writer starts in tens of
milliseconds. The writer stops when its socket closes (``serve`` stopped or
died); ``serve`` starts a new one when the old one has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

log = logging.getLogger(__name__)

_LENGTH: Final = struct.Struct("!I")
_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder()
GROUP_MAX_ROWS: Final = 4000
"""Rows one transaction takes at most (the batches that arrived together, in order)."""
STOP_WAIT_SEC: Final = 10.0
RESTART_AFTER_SEC: Final = 1.0
"""A writer that died this soon after its start is not started again before this long
has passed since (a writer that cannot start must not be spawned for every batch)."""


class WriterUnavailable(ConnectionError):
    """The write did not happen, or its answer was lost: the sender retries (503).
    A retried batch is stored once (its ``batch_id`` is claimed in the same
    transaction as its rows)."""


def frame(message: Any) -> bytes:
    body = _ENCODER.encode(message)
    return _LENGTH.pack(len(body)) + body


def take_frames(buffer: bytearray) -> list[Any]:
    """The complete frames at the start of ``buffer``, decoded and removed from it."""
    messages, start = [], 0
    while len(buffer) - start >= 4:
        (size,) = _LENGTH.unpack_from(buffer, start)
        if len(buffer) - start - 4 < size:
            break
        messages.append(_DECODER.decode(memoryview(buffer)[start + 4 : start + 4 + size]))
        start += 4 + size
    del buffer[:start]
    return messages


# --- the event loop's side --------------------------------------------------------


class WriterClient(asyncio.Protocol):
    """``serve``'s end: starts the writer on first use (again after it has gone, or
    when the running event loop is another), sends requests, resolves answers."""

    def __init__(self, args: list[str], config: dict[str, Any], *, module: str = __name__) -> None:
        """Starts ``python -m module FD *args`` (the writer's end of the socket pair is
        FD) and sends ``config`` first. Secrets go in ``config``, never in ``args``
        (another user of the machine can read a process's arguments)."""
        self._args, self._config, self._module = args, config, module
        self._process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._control: socket.socket | None = None
        self._started = -math.inf
        self._pending: dict[int, asyncio.Future[list[Any]]] = {}
        self._buffer = bytearray()
        self._ids = itertools.count()

    async def call(self, request: dict[str, Any]) -> list[Any]:
        """The writer's answer to ``request``: ``[kind, value]``."""
        loop = asyncio.get_running_loop()
        ready = self._ready
        if ready is None or self._loop is not loop or (ready.done() and self._transport is None):
            if self._loop is loop and time.monotonic() - self._started < RESTART_AFTER_SEC:
                raise WriterUnavailable("the ingest writer stopped; retry")
            ready = self._start(loop)
        await asyncio.shield(ready)
        if self._transport is None or self._transport.is_closing():
            raise WriterUnavailable("the ingest writer stopped; retry")
        ident = next(self._ids)
        message = frame([ident, request])  # one that cannot be encoded leaves nothing pending
        answer: asyncio.Future[list[Any]] = loop.create_future()
        self._pending[ident] = answer
        self._transport.write(message)
        return await answer

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self._stop(wait=False)  # one that has gone, or belongs to another event loop
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [sys.executable, "-m", self._module, str(theirs.fileno()), *self._args],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException as exc:
            ours.close()
            if isinstance(exc, OSError):  # out of processes or descriptors, say
                raise WriterUnavailable(f"the ingest writer could not start: {exc}") from exc
            raise
        finally:
            theirs.close()
        # A second handle on our end: shutting it down ends the writer's input at
        # once, whatever the transport (and its event loop) is doing.
        self._control = ours.dup()
        self._loop, self._buffer, self._started = loop, bytearray(), time.monotonic()
        ready = self._ready = loop.create_task(self._connect(ours))
        return ready

    async def _connect(self, sock: socket.socket) -> None:
        assert self._loop is not None
        transport, _ = await self._loop.create_unix_connection(lambda: self, sock=sock)
        transport.write(frame(self._config))

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for ident, kind, value in take_frames(self._buffer):
            answer = self._pending.pop(ident, None)
            if answer is not None and not answer.done():
                answer.set_result([kind, value])

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_pending()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for answer in pending.values():
            if not answer.done() and not answer.get_loop().is_closed():
                answer.set_exception(WriterUnavailable("the ingest writer stopped; retry"))

    def close(self) -> None:
        """Stop the writer: it finishes the group in hand and exits (one that does not
        within STOP_WAIT_SEC is killed)."""
        self._stop(wait=True)

    def _stop(self, *, wait: bool) -> None:
        transport, process, control = self._transport, self._process, self._control
        self._transport = self._process = self._control = self._ready = None
        if control is not None:
            with contextlib.suppress(OSError):
                control.shutdown(socket.SHUT_RDWR)
            control.close()
        if transport is not None and self._loop is not None and not self._loop.is_closed():
            transport.abort()
        self._fail_pending()
        if process is None:
            return
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_WAIT_SEC)
        if process.poll() is None:
            process.kill()
            process.wait()


# --- the writer's side ------------------------------------------------------------


class Store:
    """The statements of one batch, exactly as the event loop ran them before."""

    def __init__(self, db: sqlite3.Connection, config: dict[str, Any]) -> None:
        self.db = db
        self.insert: str = config["insert"]
        self.run_index: int = config["run_index"]
        self.seq_index: int = config["seq_index"]

    def write(self, r: dict[str, Any]) -> list[Any]:
        """``["ok", [accepted, duplicate]]``, ``["general", None]`` (nothing written:
        the general path stores it) or ``["revoked", None]``."""
        db, count = self.db, r["count"]
        if count == 0:
            self.status(r, seen=None)
            return ["ok", [0, False]]
        claimed = db.execute(
            "INSERT INTO ingest_batches (id, org_id, project_id, batch_id, accepted, dropped, "
            "received_at) VALUES (?, ?, ?, ?, ?, 0, ?) "
            "ON CONFLICT (project_id, batch_id) DO NOTHING RETURNING id",
            (r["claim_id"], r["org"], r["project"], r["batch_id"], count, r["received"]),
        ).fetchone()
        if claimed is None:
            (accepted,) = db.execute(
                "SELECT accepted FROM ingest_batches WHERE project_id = ? AND batch_id = ?",
                (r["project"], r["batch_id"]),
            ).fetchone()
            return ["ok", [int(accepted), True]]
        rows = r["rows"]
        if r["run"] is not None:
            reserved = db.execute(
                "UPDATE runs SET last_seq = last_seq + ? WHERE id = ? AND last_seq + ? < ? "
                "AND (status = 'running' OR ?) RETURNING last_seq",
                (count, r["run"], count, r["warn_at"], r["named"]),
            ).fetchone()
            if reserved is None:
                return ["general", None]
            first, run_value = int(reserved[0]) - count + 1, r["run_value"]
            run_index, seq_index = self.run_index, self.seq_index
            for offset, row in enumerate(rows):
                row[run_index], row[seq_index] = run_value, first + offset
        db.executemany(self.insert, rows)
        counted = db.execute(
            "UPDATE sidecar_tokens SET events_accepted = events_accepted + ?, last_seen_at = ? "
            "WHERE id = ? AND status = 'active'",
            (count, r["token_time"], r["token"]),
        ).rowcount
        if not counted:
            return ["revoked", None]
        self.storage(r)
        self.status(r, seen=r["seen"])
        return ["ok", [count, False]]

    def storage(self, r: dict[str, Any]) -> None:
        change = (
            "UPDATE org_quotas SET stored_events = stored_events + ?, "
            "stored_event_bytes = stored_event_bytes + ? WHERE org_id = ?"
        )
        values = (r["count"], r["chars"], r["org"])
        if self.db.execute(change, values).rowcount:
            return
        self.db.execute(
            "INSERT INTO org_quotas (id, org_id, stored_events, stored_event_bytes, updated_at) "
            "VALUES (?, ?, 0, 0, ?) ON CONFLICT (org_id) DO NOTHING",
            (r["quota_id"], r["org"], r["received_quota"]),
        )
        self.db.execute(change, values)

    def status(self, r: dict[str, Any], *, seen: Any) -> None:
        self.db.execute(
            "INSERT INTO sidecar_status AS s (token_id, instance_id, org_id, project_id, "
            "sidecar_version, counters, last_event_at, watermark) VALUES (?, ?, ?, ?, '', ?, ?, ?) "
            "ON CONFLICT (token_id, instance_id) DO UPDATE SET "
            "last_event_at = coalesce(excluded.last_event_at, s.last_event_at), "
            "watermark = CASE WHEN excluded.watermark IS NOT NULL AND (s.watermark IS NULL "
            "OR excluded.watermark > s.watermark) THEN excluded.watermark ELSE s.watermark END",
            (r["token"], r["instance"], r["org"], r["project"], r["counters"], seen,
             r["watermark"]),
        )  # fmt: skip

    def write_group(self, group: list[list[Any]]) -> list[list[Any]]:
        """``[ident, kind, value]`` for each ``[ident, request]`` of ``group``, all
        committed together; a batch that is not stored leaves nothing behind."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")  # waits up to the connection's busy timeout
        except sqlite3.Error as exc:
            return [[ident, "error", str(exc)] for ident, _ in group]
        answers = []
        try:
            for ident, request in group:
                db.execute("SAVEPOINT batch")
                try:
                    kind, value = self.write(request)
                except sqlite3.Error as exc:
                    kind, value = "error", str(exc)
                if kind != "ok":
                    db.execute("ROLLBACK TO batch")
                db.execute("RELEASE batch")
                answers.append([ident, kind, value])
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return [[ident, "error", str(exc)] for ident, _ in group]
        return answers


def _groups(sock: socket.socket, buffer: bytearray) -> Any:
    """Yield the requests that have arrived together (at least one), in order; stop
    when the socket closes."""
    waiting: list[Any] = take_frames(buffer)
    while True:
        if not waiting:
            data = sock.recv(1 << 20)
            if not data:
                return
            buffer += data
        while select.select([sock], [], [], 0)[0]:  # whatever else has arrived
            data = sock.recv(1 << 20)
            if not data:
                break
            buffer += data
        waiting += take_frames(buffer)
        group: list[Any] = []
        rows = 0
        while waiting and (
            not group or rows + len(waiting[0][1].get("rows", ())) <= GROUP_MAX_ROWS
        ):
            item = waiting.pop(0)
            rows += len(item[1].get("rows", ()))
            group.append(item)
        if group:
            yield group


def serve(sock: socket.socket, database: str) -> None:
    """The writer's loop: configuration first, then groups of requests until EOF."""
    buffer = bytearray()
    while True:
        configs = take_frames(buffer)
        if configs:
            break
        data = sock.recv(1 << 16)
        if not data:
            return
        buffer += data
    config, early = configs[0], configs[1:]
    if early:  # requests sent right behind the configuration
        buffer[:0] = b"".join(frame(message) for message in early)
    db = sqlite3.connect(
        database, timeout=config["busy_sec"], isolation_level=None, check_same_thread=False
    )
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints happen here, between groups, not inside a COMMIT.
    db.execute("PRAGMA wal_autocheckpoint=0")
    store, since_checkpoint = Store(db, config), 0
    send: Callable[[bytes], None] = sock.sendall
    try:
        for group in _groups(sock, buffer):
            answers = store.write_group(group)
            send(b"".join(frame(answer) for answer in answers))
            since_checkpoint += 1
            if since_checkpoint >= config["checkpoint_every"]:
                since_checkpoint = 0
                # PASSIVE: never waits for, nor blocks, readers and writers.
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group, and a service manager may signal every
    # process of the service: the writer finishes what it holds and stops when
    # serve's end of its socket closes (serve stopped, or died).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        serve(sock, argv[1])
    except (BrokenPipeError, ConnectionResetError):
        return 0  # serve has gone
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
