"""CONNECT: a byte-for-byte tunnel between the client and host:port.

The two transports are spliced by their protocols: what one side's
``data_received`` gets is written to the other at once, and a side whose
write buffer fills pauses reading from the other (flow control without a
copy loop or a task per direction). Half-closes are passed on, so a client
that shuts down its sending side still gets the rest of the answer. The
tunnel is one exchange, recorded when both sides are done.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast

from cogumi.sidecar.core import Exchange, Policy
from cogumi.sidecar.jobs import Job, simple_response
from cogumi.sidecar.upstream import WRITE_HIGH, UpstreamError, connect
from cogumi.tasks import spawn

if TYPE_CHECKING:
    from cogumi.sidecar.client import ClientConn

ESTABLISHED: Final = b"HTTP/1.1 200 Connection Established\r\n\r\n"
WAIT_MAX: Final = 256 * 1024


class Tunnel(Job, asyncio.Protocol):
    """The job of a CONNECT, and the protocol of its upstream connection: the
    ``asyncio.Protocol`` methods below are the upstream's events."""

    __slots__ = (
        "client_eof",
        "connect_expired",
        "connecting",
        "up",
        "upstream_eof_seen",
        "waiting",
        "waiting_size",
    )
    ex: Exchange
    policy: Policy

    def __init__(self, conn: ClientConn, ex: Exchange, policy: Policy) -> None:
        super().__init__(conn, ex, policy)
        self.up: asyncio.Transport | None = None  # the upstream, once the tunnel is open
        self.connecting: asyncio.Task[None] | None = None
        self.connect_expired = False
        self.waiting: list[bytes] = []
        self.waiting_size = 0
        self.client_eof = False
        self.upstream_eof_seen = False

    def start(self) -> None:
        ex = self.ex
        if self.policy.is_sink(ex.host):
            ex.status_code, ex.error = 403, "sink_domain"
            ex.error_detail = "sink domain: tunnels to it are refused so nothing leaves the network"
            body = f"403 Forbidden: {ex.host} is a sink domain; the sidecar records it and refuses tunnels to it\n"  # fmt: skip
            self.conn.write(simple_response(403, "Forbidden", body.encode(), close=True))
            self.finish(keep=False)
            return
        self.conn.set_deadline(self.conn.server.connect_span)
        self.connecting = spawn(self._open())

    async def _open(self) -> None:
        try:
            transport = await connect(self.ex.host, self.ex.port, self, self.conn.server.resolver)
        except UpstreamError as exc:
            self.connecting = None
            self._fail(exc)
            return
        except asyncio.CancelledError:
            self.connecting = None
            if self.connect_expired:
                self._fail(UpstreamError.connect_timeout(self.conn.server.options.connect_timeout))
            return
        self.connecting = None
        if self.done:
            transport.close()
            return
        self.up = transport
        self.ex.status_code = 200
        self.conn.set_deadline(None)
        self.conn.write(ESTABLISHED)
        if self.conn.write_full:
            self.client_full(True)
        if self.waiting:
            transport.write(b"".join(self.waiting))
            self.waiting.clear()
            self.conn.resume_reading(self.conn.WAITING)
        if self.client_eof and transport.can_write_eof():
            transport.write_eof()

    def _fail(self, exc: UpstreamError) -> None:
        if self.done:
            return
        ex = self.ex
        ex.error, ex.error_detail, ex.status_code = exc.code, exc.detail, exc.status
        reason = "Gateway Timeout" if exc.status == 504 else "Bad Gateway"
        body = f"{exc.status} {reason}: {exc.detail} ({ex.host}:{ex.port})\n".encode()
        self.conn.write(simple_response(exc.status, reason, body, close=True))
        self.finish(keep=False)

    # --- the upstream's events ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).set_write_buffer_limits(high=WRITE_HIGH)

    def data_received(self, data: bytes) -> None:
        self.ex.bytes_in += len(data)
        self.conn.write(data)

    def eof_received(self) -> bool:
        self.upstream_eof_seen = True
        if self.client_eof:
            self._close_both()
            return False
        self.conn.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.ex.error is None:
            self.ex.error, self.ex.error_detail = "upstream_reset", str(exc)
        self.up = None
        self.finish(keep=False)

    def pause_writing(self) -> None:
        self.conn.pause_reading(self.conn.UPSTREAM_FULL)

    def resume_writing(self) -> None:
        self.conn.resume_reading(self.conn.UPSTREAM_FULL)

    # --- bytes from the client ------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        self.ex.bytes_out += len(data)
        up = self.up
        if up is not None:
            up.write(data)
            return
        self.waiting.append(data)
        self.waiting_size += len(data)
        if self.waiting_size > WAIT_MAX:
            self.conn.pause_reading(self.conn.WAITING)

    def client_full(self, full: bool) -> None:
        up = self.up
        if up is None or up.is_closing():
            return
        if full:
            up.pause_reading()
        else:
            up.resume_reading()

    # --- ends ---------------------------------------------------------------------------------
    def on_client_eof(self) -> bool:
        """The client will send nothing more; pass the half-close on. Keep its side open?"""
        self.client_eof = True
        if self.upstream_eof_seen:  # both sides are done: close, no half-close to pass on
            self._close_both()
            return False
        up = self.up
        if up is not None and up.can_write_eof():
            up.write_eof()
        return self.up is not None or self.connecting is not None

    def client_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.ex.error is None:
            self.ex.error, self.ex.error_detail = "client_reset", str(exc)
        self.release(reuse=False)
        self.finish(keep=False)

    def _close_both(self) -> None:
        up, self.up = self.up, None
        if up is not None:
            up.close()
        self.finish(keep=False)

    def on_deadline(self) -> None:
        if self.connecting is not None:
            self.connect_expired = True
            self.connecting.cancel()
            self.conn.set_deadline(None)

    def release(self, *, reuse: bool) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        up, self.up = self.up, None
        if up is not None:
            up.abort()  # a tunnel is never reused; what is unsent is moot
