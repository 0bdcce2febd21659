"""Forwarding one plain-HTTP exchange: the request streamed upstream as it
arrives, the response streamed back, each framed afresh for its side of the hop
(see :mod:`cogumi.sidecar.jobs` for what a job is)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from cogumi.sidecar.core import Exchange, Policy, end_to_end, render_head
from cogumi.sidecar.http1 import LAST_CHUNK, Head, chunk
from cogumi.sidecar.jobs import Job, simple_response
from cogumi.sidecar.upstream import UpstreamConn, UpstreamError, connect
from cogumi.tasks import spawn

if TYPE_CHECKING:
    from cogumi.sidecar.client import ClientConn

FLUSH_AT: Final = 64 * 1024
"""Response bytes gathered before a write; smaller pieces go out in one send."""
WAIT_MAX: Final = 256 * 1024
"""Request bytes held while the upstream connection opens before the client is paused."""
NO_BODY_STATUS: Final = frozenset({204, 304})


class Forward(Job):
    """A plain-HTTP exchange: the request streamed upstream as it arrives, the
    response streamed back, both framed afresh for their side of the hop."""

    __slots__ = (
        "attempt",
        "connect_expired",
        "connecting",
        "failed",
        "head",
        "interim",
        "keep",
        "key",
        "out",
        "out_size",
        "rechunk",
        "replay",
        "response",
        "until_close",
        "up_out",
        "up_out_size",
        "upstream",
    )
    ex: Exchange
    policy: Policy

    def __init__(
        self, conn: ClientConn, head: Head, ex: Exchange, policy: Policy, request_head: bytes
    ) -> None:
        super().__init__(conn, ex, policy)
        self.head = head
        self.key = (ex.host, ex.port)
        self.upstream: UpstreamConn | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.connect_expired = False
        self.up_out: list[bytes] = [request_head]
        self.up_out_size = len(request_head)
        # What a retry on a fresh connection must resend; None once body bytes went out.
        self.replay: list[bytes] | None = [request_head]
        self.attempt = 1
        self.response: Head | None = None
        self.interim = False
        self.rechunk = False
        self.until_close = False
        self.keep = head.keep_alive
        self.out: list[bytes] = []
        self.out_size = 0
        self.failed: UpstreamError | None = None

    # --- upstream connection -------------------------------------------------------
    def start(self) -> None:
        """Called from the client's parser: what goes upstream is sent once the
        client's bytes at hand are parsed (``flush_up``), head and body together."""
        upstream = self.conn.server.pool.take(self.key)
        if upstream is not None:
            self._attach(upstream, flush=False)
        else:
            self._connect()

    def _connect(self) -> None:
        server = self.conn.server
        self.conn.set_deadline(server.connect_span)
        self.connecting = spawn(self._open(UpstreamConn(server.pool, self.key)))

    async def _open(self, upstream: UpstreamConn) -> None:
        try:
            await connect(self.ex.host, self.ex.port, upstream, self.conn.server.resolver)
        except UpstreamError as exc:
            self.connecting = None
            self.upstream_failed(exc)
            return
        except asyncio.CancelledError:
            self.connecting = None
            if self.connect_expired:
                self.upstream_failed(UpstreamError.connect_timeout(self.conn.server.options.connect_timeout))  # fmt: skip
            return
        self.connecting = None
        if self.done:
            upstream.close()
            return
        self._attach(upstream)

    def _attach(self, upstream: UpstreamConn, *, flush: bool = True) -> None:
        self.upstream = upstream
        upstream.attach(self)
        self.conn.resume_reading(self.conn.WAITING)
        if flush:
            self.flush_up()
        if self.request_done:
            self.conn.set_deadline(self.conn.server.upstream_span)
        else:
            self.conn.set_deadline(self.conn.server.idle_span)
        if self.conn.write_full:  # the previous answer is still queued for the client
            self.client_full(True)

    def release(self, *, reuse: bool) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        upstream, self.upstream = self.upstream, None
        if upstream is None:
            return
        self.conn.resume_reading(self.conn.UPSTREAM_FULL)  # its write buffer is not ours to wait on
        if reuse:
            self.conn.server.pool.put(upstream)
        else:
            upstream.abort()

    # --- request (client -> upstream) -------------------------------------------------
    def _send(self, data: bytes) -> None:
        self.up_out.append(data)
        self.up_out_size += len(data)

    def flush_up(self) -> None:
        if not self.up_out:
            return
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            if self.up_out_size > WAIT_MAX:
                self.conn.pause_reading(self.conn.WAITING)
            return
        data = self.up_out[0] if len(self.up_out) == 1 else b"".join(self.up_out)
        self.up_out.clear()
        self.up_out_size = 0
        upstream.transport.write(data)

    def on_body(self, data: bytes) -> None:
        ex = self.ex
        ex.bytes_out += len(data)
        ex.request_body.add(data)
        if self.failed is not None:
            return  # only evidence now: the upstream is gone
        self.replay = None
        self._send(chunk(data) if self.head.chunked else data)
        if self.upstream is not None:
            self.conn.set_deadline(self.conn.server.idle_span)

    def on_end(self) -> None:
        self.request_done = True
        if self.failed is not None:
            self._answer_failure()
            return
        if self.head.chunked:
            self._send(LAST_CHUNK)
            if self.replay is not None:
                self.replay.append(LAST_CHUNK)
        if self.upstream is not None:
            self.conn.set_deadline(self.conn.server.upstream_span)

    # --- response (upstream -> client) ---------------------------------------------------
    def upstream_full(self, full: bool) -> None:
        if full:
            self.conn.pause_reading(self.conn.UPSTREAM_FULL)
        else:
            self.conn.resume_reading(self.conn.UPSTREAM_FULL)

    def client_full(self, full: bool) -> None:
        upstream = self.upstream
        if upstream is None or upstream.closed:
            return
        upstream.pause_reading(full)
        # The upstream is not slow while we do not read it: no timeout meanwhile.
        self.conn.set_deadline(None if full else self.conn.server.upstream_span)

    def on_response_head(self, response: Head) -> None:
        if 100 <= response.status < 200:
            self.interim = True  # 1xx: not relayed (100 Continue was answered by us)
            return
        self.response = response
        ex = self.ex
        ex.status_code, ex.response_headers = response.status, response.headers
        no_body = ex.method == "HEAD" or response.status in NO_BODY_STATUS
        headers = end_to_end(response.headers) if response.hop else list(response.headers)
        keep = self.head.keep_alive
        if not no_body and (response.chunked or response.content_length is None):
            if self.head.version == "1.1":
                self.rechunk = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                keep = False
        self.until_close = not no_body and not response.chunked and response.content_length is None
        self.keep = keep
        headers.append(("Connection", "keep-alive" if keep else "close"))
        self._out(render_head(f"HTTP/1.1 {response.status} {response.reason}", headers))
        if no_body:
            self._response_complete()

    def on_response_body(self, data: bytes) -> None:
        if self.response is None:
            return
        ex = self.ex
        ex.bytes_in += len(data)
        ex.response_body.add(data)
        self._out(chunk(data) if self.rechunk else data)

    def on_response_end(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.response is None or self.done:
            return
        if self.rechunk:
            self._out(LAST_CHUNK)
        self._response_complete()

    def _out(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        if len(out) == 1:
            self.conn.write(out[0])
        elif self.out_size < FLUSH_AT:
            self.conn.write(b"".join(out))
        else:
            self.conn.writelines(out)
        out.clear()
        self.out_size = 0

    def _response_complete(self) -> None:
        self.flush()
        response = self.response
        assert response is not None
        reuse = self.request_done and response.keep_alive and not self.until_close
        self.release(reuse=reuse)
        self.finish(keep=self.keep and self.request_done)

    # --- failures ----------------------------------------------------------------------------
    def upstream_eof(self) -> None:
        if self.response is not None and self.until_close and not self.done:
            if self.rechunk:
                self._out(LAST_CHUNK)
            self._response_complete()  # a close-delimited body ends here

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        upstream, self.upstream = self.upstream, None
        if self.response is None:
            if upstream is not None and upstream.reused and self.replay is not None and self.attempt == 1:  # fmt: skip
                self._retry()
                return
            if exc is None:
                self.upstream_failed(UpstreamError("upstream_closed", "upstream closed before answering"))  # fmt: skip
            else:
                self.upstream_failed(UpstreamError.from_os(exc))
            return
        if self.until_close and exc is None:
            self.upstream_eof()
            return
        error = UpstreamError.from_os(exc) if exc else UpstreamError("upstream_closed", "upstream closed mid-body")  # fmt: skip
        self.upstream_failed(error)

    def _retry(self) -> None:
        """A pooled connection the upstream had closed: resend on a fresh one (no body sent yet)."""
        assert self.replay is not None
        self.attempt = 2
        self.up_out = list(self.replay)
        self.up_out_size = sum(map(len, self.up_out))
        upstream = self.conn.server.pool.take(self.key)
        if upstream is not None:
            self._attach(upstream)
        else:
            self._connect()

    def upstream_failed(self, exc: UpstreamError) -> None:
        if self.done:
            return
        self.release(reuse=False)
        ex = self.ex
        if self.response is not None:  # the head went out already: all we can do is stop
            ex.error, ex.error_detail = exc.code, f"{exc.detail} (mid-response)"
            self.flush()
            self.finish(keep=False)
            return
        ex.error, ex.error_detail, ex.status_code = exc.code, exc.detail, exc.status
        self.failed = exc
        self.out.clear()
        self.out_size = 0
        if self.request_done:
            self._answer_failure()
            return
        # What the agent tried to send is evidence even if it never arrived: read the rest.
        self.conn.resume_reading(self.conn.WAITING | self.conn.UPSTREAM_FULL)
        self.conn.set_deadline(self.conn.server.upstream_span)

    def _answer_failure(self) -> None:
        exc = self.failed
        assert exc is not None
        reason = "Gateway Timeout" if exc.status == 504 else "Bad Gateway"
        body = f"{exc.status} {reason}: {exc.detail} ({self.ex.host}:{self.ex.port})\n".encode()
        self.conn.write(simple_response(exc.status, reason, body, close=True))
        self.finish(keep=False)

    def on_deadline(self) -> None:
        options = self.conn.server.options
        if self.connecting is not None:
            self.connect_expired = True
            self.connecting.cancel()
            self.conn.set_deadline(None)
        elif self.failed is not None:
            self._answer_failure()
        elif self.request_done or self.response is not None:
            within = options.upstream_timeout
            self.upstream_failed(UpstreamError("upstream_timeout", f"no bytes from upstream for {within:g}s", status=504))  # fmt: skip
        else:
            self.abort("client_timeout", f"the request body stalled for {options.client_idle_timeout:g}s")  # fmt: skip
