"""Upstream connections: opening them, pooling them per host:port, parsing
responses, and naming every way they fail.

Each failure becomes an :class:`UpstreamError` with a stable ``code`` (that
goes into the event) and the status the client gets: 502 when the upstream is
unreachable or breaks, 504 when it is too slow.

:class:`UpstreamConn` is an asyncio protocol: the response parser's callbacks
call the exchange attached to it (see :mod:`cogumi.sidecar.forward`) directly,
so relaying a response costs no task switch and no intermediate queue.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Final, cast

import httptools

from cogumi.sidecar.http1 import NOTED, Head

if TYPE_CHECKING:
    from cogumi.sidecar.forward import Forward

IDLE_MAX_SEC: Final = 30.0
IDLE_PER_HOST: Final = 64
WRITE_HIGH: Final = 1024 * 1024
"""Bytes queued for a peer before reading from the other side pauses."""


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

    @classmethod
    def connect_timeout(cls, within: float) -> UpstreamError:
        return cls("upstream_connect_timeout", f"no connection within {within:g}s", status=504)


class Resolver:
    """Host names to addresses, each answer reused for ``ttl`` seconds.

    The system resolver is asked from a thread and most libcs keep no cache,
    so without this every new tunnel or upstream connection would wait for a
    DNS round trip. Failures are not cached; IP literals are never looked up.
    """

    MAX_ENTRIES: Final = 1024

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.cache: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self.lookups = 0

    def known(self, host: str, port: int) -> list[tuple[str, int]] | None:
        """The addresses without a lookup (an IP literal, or a fresh cached answer), or None."""
        if _is_ip(host):
            return [(host, port)]
        hit = self.cache.get((host, port))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        known = self.known(host, port)
        if known is not None:
            return known
        key = (host, port)
        now = time.monotonic()
        self.lookups += 1
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((str(info[4][0]), port) for info in infos))
        if self.ttl > 0:
            if len(self.cache) >= self.MAX_ENTRIES:
                self.cache = {k: v for k, v in self.cache.items() if v[0] > now}
                if len(self.cache) >= self.MAX_ENTRIES:
                    self.cache.clear()
            self.cache[key] = (now + self.ttl, addresses)
        return addresses


@lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def connect(
    host: str, port: int, protocol: asyncio.Protocol, resolver: Resolver
) -> asyncio.Transport:
    """Open a TCP connection driven by ``protocol``, trying each address in turn.

    The caller bounds the time: the proxy's deadline sweep cancels the task."""
    loop = asyncio.get_running_loop()
    addresses = resolver.known(host, port)  # most often: no await, no lookup
    if addresses is None:
        try:
            addresses = await resolver.resolve(host, port)
        except OSError as exc:
            raise UpstreamError.from_os(exc) from exc
    failure: OSError | None = None
    for address, address_port in addresses:
        try:
            transport, _ = await loop.create_connection(lambda: protocol, address, address_port)
        except OSError as exc:
            failure = exc
            continue
        return transport
    assert failure is not None
    raise UpstreamError.from_os(failure) from failure


class UpstreamConn(asyncio.Protocol):
    """One upstream HTTP/1.1 connection, reused across exchanges while it stays clean."""

    __slots__ = (
        "_head",
        "closed",
        "idle_since",
        "job",
        "key",
        "parser",
        "pool",
        "reading_paused",
        "reused",
        "transport",
    )

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.job: Forward | None = None
        self.reused = False
        self.idle_since = 0.0
        self.closed = False
        self.reading_paused = False
        self.parser: httptools.HttpResponseParser | None = None
        self._head = Head()

    # --- life cycle ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH)

    def attach(self, job: Forward) -> None:
        self.job = job
        self.parser = httptools.HttpResponseParser(self)

    def close(self) -> None:
        self.job = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self.job = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading: the client takes the response slower than it comes."""
        if self.transport is None or self.closed or paused == self.reading_paused:
            return
        self.reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    @property
    def clean(self) -> bool:
        """Nothing of the last exchange still queued to send: fit for the next one."""
        return self.transport is not None and self.transport.get_write_buffer_size() == 0

    @property
    def usable(self) -> bool:
        return not self.closed and time.monotonic() - self.idle_since < IDLE_MAX_SEC

    # --- bytes in -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        job = self.job
        if job is None or self.parser is None:
            self.pool.discard(self)  # bytes nobody asked for: not reusable
            self.close()
            return
        conn = job.conn
        conn.deadline = conn.server.now + conn.server.upstream_span
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            job.upstream_failed(UpstreamError("upstream_bad_response", "unrequested protocol switch"))  # fmt: skip
        except httptools.HttpParserError as exc:
            job.upstream_failed(UpstreamError("upstream_bad_response", f"not HTTP/1.x: {exc}"))
        if self.job is job:
            job.flush()

    def eof_received(self) -> bool:
        job = self.job
        if job is not None:
            job.upstream_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        job, self.job = self.job, None
        if job is not None:
            job.upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.job is not None:
            self.job.upstream_full(True)

    def resume_writing(self) -> None:
        if self.job is not None:
            self.job.upstream_full(False)

    # --- httptools callbacks -------------------------------------------------------
    def on_message_begin(self) -> None:
        self._head = Head()

    def on_status(self, status: bytes) -> None:
        self._head.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        head = self._head
        head.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        low = name.lower()
        if low in NOTED:
            head.note(low, value)

    def on_headers_complete(self) -> None:
        parser, head = self.parser, self._head
        assert parser is not None and self.job is not None
        head.status = parser.get_status_code()
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive()
        self.job.on_response_head(head)

    def on_body(self, body: bytes) -> None:
        if self.job is not None:
            self.job.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.job is not None:
            self.job.on_response_end()


class UpstreamPool:
    """Idle keep-alive connections per host:port, newest first."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[UpstreamConn]] = {}

    def take(self, key: tuple[str, int]) -> UpstreamConn | None:
        stack = self.idle.get(key)
        while stack:
            upstream = stack.pop()
            if upstream.usable:
                upstream.reused = True
                return upstream
            upstream.close()
        return None

    def put(self, upstream: UpstreamConn) -> None:
        upstream.job = None
        stack = self.idle.setdefault(upstream.key, [])
        if len(stack) >= IDLE_PER_HOST or upstream.closed or not upstream.clean:
            upstream.close()
            return
        upstream.pause_reading(False)  # an idle connection must notice the upstream closing
        upstream.idle_since = time.monotonic()
        stack.append(upstream)

    def discard(self, upstream: UpstreamConn) -> None:
        stack = self.idle.get(upstream.key)
        if stack and upstream in stack:
            stack.remove(upstream)

    def sweep(self) -> None:
        """Close connections idle for longer than ``IDLE_MAX_SEC``."""
        for stack in self.idle.values():
            while stack and not stack[0].usable:
                stack.pop(0).close()

    def close_all(self) -> None:
        for stack in self.idle.values():
            for upstream in stack:
                upstream.close()
        self.idle.clear()
