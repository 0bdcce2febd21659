"""Upstream connections: opening them, pooling them per host:port, reading
responses, and naming every way they fail.

Each failure becomes an :class:`UpstreamError` with a stable ``code`` (that
goes into the event) and the status the client gets: 502 when the upstream is
unreachable or breaks, 504 when it is too slow.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from cogumi.sidecar.http1 import BODY, END, HEAD, READ_SIZE, Head, MessageError, MessageReader

IDLE_MAX_SEC = 30.0
IDLE_PER_HOST = 64


class UpstreamError(Exception):
    def __init__(self, code: str, detail: str, *, status: int = 502, stale: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.status, self.stale = code, detail, status, stale

    @classmethod
    def from_os(cls, exc: BaseException, *, stale: bool = False) -> UpstreamError:
        if isinstance(exc, socket.gaierror):
            return cls("dns_failure", f"DNS lookup failed: {exc.strerror or exc}")
        if isinstance(exc, ConnectionRefusedError):
            return cls("upstream_refused", "connection refused")
        if isinstance(exc, TimeoutError):
            return cls("upstream_timeout", "upstream timed out", status=504)
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            return cls("upstream_reset", "connection reset by upstream", stale=stale)
        return cls("upstream_unreachable", f"{type(exc).__name__}: {exc}", stale=stale)


async def open_upstream(
    host: str, port: int, within: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(within):
            return await asyncio.open_connection(host, port, limit=READ_SIZE)
    except TimeoutError as exc:
        raise UpstreamError(
            "upstream_connect_timeout", f"no connection within {within:g}s", status=504
        ) from exc
    except OSError as exc:
        raise UpstreamError.from_os(exc) from exc


class Upstream:
    """One upstream connection, reused across exchanges while it stays clean."""

    def __init__(
        self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.key, self.reader, self.writer = key, reader, writer
        self.reused = False
        self.finished = False
        self.idle_since = 0.0
        self._messages: MessageReader | None = None
        self._until_close = False

    @property
    def alive(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    @property
    def usable(self) -> bool:
        return self.alive and time.monotonic() - self.idle_since < IDLE_MAX_SEC

    def close(self) -> None:
        self.writer.close()

    async def _next(self, within: float) -> tuple[int, Head | bytes | None] | None:
        assert self._messages is not None
        if self._messages.buffered:
            return await self._messages.next()  # no network wait, no timer needed
        try:
            async with asyncio.timeout(within):
                return await self._messages.next()
        except TimeoutError as exc:
            raise UpstreamError(
                "upstream_timeout", f"no bytes from upstream for {within:g}s", status=504
            ) from exc
        except MessageError as exc:
            raise UpstreamError("upstream_bad_response", f"not HTTP/1.x: {exc}") from exc
        except OSError as exc:
            raise UpstreamError.from_os(exc, stale=True) from exc

    async def read_head(self, within: float, method: str) -> Head:
        """The final response head (1xx interim responses are skipped)."""
        self._messages = MessageReader(self.reader, response=True)
        self.finished = False
        while True:
            item = await self._next(within)
            if item is None:
                raise UpstreamError("upstream_closed", "upstream closed before answering", stale=True)  # fmt: skip
            kind, head = item
            if kind != HEAD or not isinstance(head, Head) or 100 <= head.status < 200:
                continue
            if method == "HEAD" or head.status in (204, 304):
                self.finished = True
            self._until_close = not head.chunked and head.content_length is None
            return head

    async def body(
        self, within: float, before_wait: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; ``before_wait`` runs before each network wait."""
        assert self._messages is not None
        while not self.finished:
            if not self._messages.buffered:
                await before_wait()
            item = await self._next(within)
            if item is None:
                if self._until_close:
                    return  # close-delimited body: EOF is its end; connection not reusable
                raise UpstreamError("upstream_closed", "upstream closed mid-body")
            kind, data = item
            if kind == END:
                self.finished = True
            elif kind == BODY and isinstance(data, bytes):
                yield data


class UpstreamPool:
    """Idle keep-alive connections per host:port, newest first."""

    def __init__(self, *, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.idle: dict[tuple[str, int], list[Upstream]] = {}

    async def acquire(self, host: str, port: int) -> Upstream:
        key = (host, port)
        stack = self.idle.get(key)
        while stack:
            upstream = stack.pop()
            if upstream.usable:
                upstream.reused = True
                return upstream
            upstream.close()
        reader, writer = await open_upstream(host, port, self.connect_timeout)
        return Upstream(key, reader, writer)

    def release(self, upstream: Upstream) -> None:
        stack = self.idle.setdefault(upstream.key, [])
        if len(stack) >= IDLE_PER_HOST or not upstream.alive:
            upstream.close()
            return
        upstream.idle_since = time.monotonic()
        stack.append(upstream)

    def close_all(self) -> None:
        for stack in self.idle.values():
            for upstream in stack:
                upstream.close()
        self.idle.clear()
