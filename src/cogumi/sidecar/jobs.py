"""What the proxy does with one exchange: the job base class, and the two jobs
that answer a request themselves (the sidecar's own /healthz, and sink domains).

A *job* is attached to a client connection (:mod:`cogumi.sidecar.client`) for
the life of one exchange. The connection's parser hands it the request
(``on_body``, ``on_end``); forwarding jobs (:mod:`forward`, :mod:`tunnel`) also
get the upstream's bytes, and all of them write to the transports directly: no
task, no queue, no timer per exchange. A job ends exactly once
(:meth:`Job.finish`), which records the exchange and gives the client
connection back for its next request.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Final

from cogumi.sidecar.core import Exchange, Policy, render_head
from cogumi.sidecar.http1 import Head

if TYPE_CHECKING:
    from cogumi.sidecar.client import ClientConn

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def simple_response(status: int, reason: str, body: bytes, *, close: bool) -> bytes:
    content_type = "application/json" if body.startswith(b"{") else "text/plain; charset=utf-8"
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close" if close else "keep-alive"),
    ]
    return render_head(f"HTTP/1.1 {status} {reason}", headers) + body


class Job:
    """One exchange on a client connection; the defaults fit a job that only
    reads the request and answers it."""

    __slots__ = ("conn", "done", "ex", "policy", "request_done")

    def __init__(self, conn: ClientConn, ex: Exchange | None, policy: Policy | None) -> None:
        self.conn, self.ex, self.policy = conn, ex, policy
        self.done = False
        self.request_done = False

    def on_body(self, data: bytes) -> None:
        if self.ex is not None:
            self.ex.bytes_out += len(data)
            self.ex.request_body.add(data)

    def on_end(self) -> None:
        self.request_done = True

    def flush_up(self) -> None:
        """Send what the client's last bytes produced for the upstream."""

    def client_full(self, full: bool) -> None:
        """The client reads slower than we write: stop (or resume) reading upstream."""

    def on_deadline(self) -> None:
        self.abort("client_timeout", "the client sent nothing for too long")

    def client_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.abort("client_closed", "the client closed the connection mid-exchange")

    def abort(self, code: str, detail: str) -> None:
        """Cut the exchange short; it is recorded with ``code`` unless it already has an error."""
        if self.ex is not None and self.ex.error is None:
            self.ex.error, self.ex.error_detail = code, detail
        self.release(reuse=False)
        self.finish(keep=False)

    def release(self, *, reuse: bool) -> None:
        """Let go of upstream resources (a connection, a pending connect)."""

    def finish(self, *, keep: bool) -> None:
        if self.done:
            return
        self.done = True
        if self.ex is not None and self.policy is not None:
            self.conn.server.record(self.ex, self.policy)
        self.conn.job_done(keep)


class Local(Job):
    """Origin-form requests address the sidecar itself: only /healthz exists."""

    __slots__ = ("head",)

    def __init__(self, conn: ClientConn, head: Head) -> None:
        super().__init__(conn, None, None)
        self.head = head

    def on_end(self) -> None:
        self.request_done = True
        head = self.head
        if head.url.split("?", 1)[0] == "/healthz" and head.method in ("GET", "HEAD"):
            uptime = round(time.time() - self.conn.server.started_at, 1)
            body = json.dumps({"ok": True, "uptime_sec": uptime}).encode()
            self.conn.write(simple_response(200, "OK", body, close=not head.keep_alive))
            self.finish(keep=head.keep_alive)
            return
        message = b"this is a forward proxy: send absolute-form http:// URIs or CONNECT\n"
        self.conn.write(simple_response(400, "Bad Request", message, close=True))
        self.finish(keep=False)


class SinkAnswer(Job):
    """A request to a sink domain: read it whole (into the capped preview), answer ``200 {}``."""

    __slots__ = ("keep",)
    ex: Exchange

    def __init__(self, conn: ClientConn, head: Head, ex: Exchange, policy: Policy) -> None:
        super().__init__(conn, ex, policy)
        self.keep = head.keep_alive

    def on_end(self) -> None:
        self.request_done = True
        ex = self.ex
        ex.intercepted = True
        ex.status_code = 200
        ex.response_headers = [("Content-Type", "application/json"), ("Content-Length", "2")]
        ex.bytes_in = 2
        ex.response_body.add(b"{}")
        self.conn.write(simple_response(200, "OK", b"{}", close=not self.keep))
        self.finish(keep=self.keep)
