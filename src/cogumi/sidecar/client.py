"""One client connection of the proxy: parses its requests with httptools and
runs one job at a time (:mod:`jobs`, :mod:`forward`, :mod:`tunnel`); requests
pipelined behind it wait, in order, with reading paused. A plain ``CONNECT``
head, how every HTTPS connection through the proxy starts, is read without
llhttp (:func:`~cogumi.sidecar.http1.parse_connect_head`)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

from cogumi.sidecar.core import (
    BadProxyRequest,
    Exchange,
    Preview,
    end_to_end,
    parse_absolute_uri,
    parse_authority,
    render_head,
)
from cogumi.sidecar.forward import Forward
from cogumi.sidecar.http1 import MAX_HEAD_BYTES, NOTED, Head, MessageError, parse_connect_head
from cogumi.sidecar.jobs import CONTINUE, Job, Local, SinkAnswer, simple_response
from cogumi.sidecar.tunnel import Tunnel
from cogumi.sidecar.upstream import WRITE_HIGH

if TYPE_CHECKING:
    from cogumi.sidecar.proxy import ProxyServer

log = logging.getLogger("cogumi.sidecar")

SINK_PREVIEW_LIMIT: Final = 32 * 1024

_NO_HEAD: Final = Head()

# What the request parser produces, in order; queued while an exchange is still answering.
HEAD, BODY, END, RAW, BAD = range(5)


class ClientConn(asyncio.Protocol):
    """One client connection: parses its requests and runs one job at a time."""

    # Why reading from the client is paused (a bit each).
    PIPELINE: Final = 1  # the next request waits until this exchange is answered
    UPSTREAM_FULL: Final = 2  # the upstream reads slower than the client sends
    WAITING: Final = 4  # the upstream connection is not open yet

    __slots__ = (
        "_draining",
        "_head",
        "_head_bytes",
        "_in_message",
        "_url",
        "client_eof",
        "closed",
        "deadline",
        "job",
        "parser",
        "paused",
        "pending",
        "server",
        "transport",
        "tunnel",
        "upgraded",
        "write_full",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = None  # made when first needed
        self.job: Job | None = None
        self.tunnel: Tunnel | None = None
        self.pending: deque[tuple[int, Any]] = deque()
        self.paused = 0
        self.deadline = math.inf
        self.closed = False
        self.client_eof = False
        self.upgraded = False
        self.write_full = False
        self._draining = False
        self._url = b""
        self._head = _NO_HEAD  # each request's own is made in on_message_begin
        self._head_bytes = 0
        self._in_message = False  # the parser is inside a request

    # --- transport events ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.server.conns.add(self)
        self.server.connections_accepted += 1
        if self.server.closing:
            self.close()
            return
        self.deadline = self.server.now + self.server.idle_span

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None and self.upgraded and not self.pending:
            self.tunnel.from_client(data)
            return
        if self.upgraded:
            self._item(RAW, data)
            return
        if (
            data[:8] == b"CONNECT "
            and not self._in_message
            and self.job is None
            and not self.pending
            and not self.closed
            and self._connect(data)
        ):
            return
        parser = self.parser
        if parser is None:
            parser = self.parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True  # CONNECT (or a refused upgrade): the rest is not HTTP
            rest = data[exc.args[0] :]
            if rest:
                self._item(RAW, rest)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, MessageError):
                log.error("sidecar connection failed", exc_info=cause)
                self._crash()
                return
            self._item(BAD, str(cause))
        except httptools.HttpParserError as exc:
            self._item(BAD, str(exc) or type(exc).__name__)
        self._after()

    def eof_received(self) -> bool:
        self.client_eof = True
        job = self.job
        if isinstance(job, Tunnel):
            return job.on_client_eof()
        if job is None:
            return False
        if not job.request_done:
            job.abort("client_closed", "the client closed its side mid-request")
            return False
        return True  # answer what was asked, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
        self.pending.clear()
        job, self.job, self.tunnel = self.job, None, None
        if job is not None and not job.done:
            job.client_lost(exc)
        self.server.conn_idle()

    def pause_writing(self) -> None:
        self.write_full = True
        if self.job is not None:
            self.job.client_full(True)

    def resume_writing(self) -> None:
        self.write_full = False
        if self.job is not None:
            self.job.client_full(False)

    # --- helpers for jobs ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if not self.closed and self.transport is not None:
            self.transport.writelines(data)

    def write_eof(self) -> None:
        if not self.closed and self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def set_deadline(self, span: float | None) -> None:
        """Expire ``span`` s from now (one of the server's ``*_span``), or never."""
        self.deadline = math.inf if span is None else self.server.now + span

    def pause_reading(self, reason: int) -> None:
        if not self.paused and not self.closed and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reasons: int) -> None:
        if self.paused & reasons:
            self.paused &= ~reasons
            if not self.paused and not self.closed and self.transport is not None:
                self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def job_done(self, keep: bool) -> None:
        self.job = None
        self.tunnel = None
        if self.closed or not keep or self.server.closing:
            self.close()
            self.server.conn_idle()
            return
        self.set_deadline(self.server.idle_span)
        self._drain()
        if self.job is None and self.client_eof:
            self.close()

    def on_deadline(self) -> None:
        self.deadline = math.inf
        if self.job is None:
            self.close()  # idle keep-alive connection
        else:
            self.job.on_deadline()

    # --- requests -------------------------------------------------------------------------------
    def _connect(self, data: bytes) -> bool:
        """A plain CONNECT head, without llhttp (see :func:`parse_connect_head`). Taken?"""
        parsed = parse_connect_head(data)
        if parsed is None:
            return False
        head, end = parsed
        self.upgraded = True
        try:
            self._start(head)
        except Exception:
            log.exception("sidecar connection failed")
            self._crash()
            return True
        if end < len(data):
            self._item(RAW, data[end:])
        return True  # (no _after(): a tunnel sends the client's bytes on as they come)

    def _item(self, kind: int, value: Any) -> None:
        if self.closed:
            return
        job = self.job
        if (
            self.pending
            or (kind == RAW and self.tunnel is None)
            or (kind != RAW and job is not None and job.request_done)
        ):
            self.pending.append((kind, value))
            self.pause_reading(self.PIPELINE)
            return
        try:
            self._dispatch(kind, value)
        except Exception:
            log.exception("sidecar exchange failed")
            self._crash()

    def _dispatch(self, kind: int, value: Any) -> None:
        job = self.job
        if kind == HEAD:
            self._start(value)
        elif kind == BODY:
            if job is not None:
                job.on_body(value)
        elif kind == END:
            if job is not None:
                job.on_end()
        elif kind == RAW:
            if self.tunnel is not None:
                self.tunnel.from_client(value)
        elif job is not None:  # BAD mid-request
            job.abort("client_bad_request", f"malformed request: {value}")
        else:
            self._refuse(400, "Bad Request", f"{value}\n")

    def _drain(self) -> None:
        """Run the queued items of the next request(s) now that the connection is free."""
        if self._draining:
            return
        self._draining = True
        try:
            while self.pending and not self.closed:
                kind, value = self.pending[0]
                job = self.job
                if (kind == RAW and self.tunnel is None) or (
                    kind != RAW and job is not None and job.request_done
                ):
                    break
                self.pending.popleft()
                self._dispatch(kind, value)
            self._after()
        except Exception:
            log.exception("sidecar exchange failed")
            self._crash()
        finally:
            self._draining = False
        if not self.pending:
            self.resume_reading(self.PIPELINE)

    def _after(self) -> None:
        if self.job is not None:
            self.job.flush_up()

    def _crash(self) -> None:
        job = self.job
        if job is not None and not job.done:
            job.abort("sidecar_error", "internal error in the sidecar")
        self.abort()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self.write(simple_response(status, reason, message.encode(), close=True))
        self.close()
        self.server.conn_idle()

    def _start(self, head: Head) -> None:
        server = self.server
        if head.method == "CONNECT":
            try:
                host, port = parse_authority(head.url)
            except BadProxyRequest as exc:
                self._refuse(400, "Bad Request", f"{exc}\n")
                return
            ex = Exchange(method="CONNECT", host=host, port=port, request_headers=head.headers)
            server.exchange_opened(ex)
            self.job = self.tunnel = Tunnel(self, ex, server.policy())
            self.tunnel.start()
            return
        if head.upgrade:
            self._refuse(501, "Not Implemented", "protocol upgrades are not proxied\n")
            return
        if head.url[:7].lower() != "http://":
            self.job = Local(self, head)
            return
        try:
            host, port, path = parse_absolute_uri(head.url)
        except BadProxyRequest as exc:
            self._refuse(400, "Bad Request", f"{exc}\n")
            return
        policy = server.policy()
        sink = policy.is_sink(host)
        preview = server.options.preview_bytes
        ex = Exchange(method=head.method, host=host, port=port, path=path,
                      request_headers=head.headers,
                      request_body=Preview(SINK_PREVIEW_LIMIT if sink else preview),
                      response_body=Preview(preview))  # fmt: skip
        server.exchange_opened(ex)
        if head.expect_continue:
            self.write(CONTINUE)
        if sink:
            self.job = SinkAnswer(self, head, ex, policy)
            return
        headers = head.headers
        if head.hop:
            headers = [(n, v) for n, v in end_to_end(headers) if n.lower() != "expect"]
        if not head.has_host:
            headers = [("Host", host if port == 80 else f"{host}:{port}"), *headers]
        if head.chunked:
            headers = [*headers, ("Transfer-Encoding", "chunked")]
        forward = Forward(self, head, ex, policy, render_head(f"{head.method} {path} HTTP/1.1", headers))  # fmt: skip
        self.job = forward
        forward.start()

    # --- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._head = Head()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise MessageError("message head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        head = self._head
        head.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        low = name.lower()
        if low in NOTED:
            head.note(low, value)
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise MessageError("message head too large")

    def on_headers_complete(self) -> None:
        parser, head = self.parser, self._head
        assert parser is not None
        head.method = parser.get_method().decode("ascii", "replace")
        head.url = self._url.decode("latin-1")
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive()
        head.upgrade = parser.should_upgrade()
        if self.job is None and not self.pending and not self.closed:
            self._start(head)  # the common case, without the queue's indirection
        else:
            self._item(HEAD, head)

    def on_body(self, body: bytes) -> None:
        job = self.job
        if job is not None and not job.request_done and not self.pending:
            job.on_body(body)
        else:
            self._item(BODY, body)

    def on_message_complete(self) -> None:
        self._in_message = False
        job = self.job
        if job is not None and not job.request_done and not self.pending:
            job.on_end()
        else:
            self._item(END, None)
