"""The sink's listeners: any method, any path, answered 200 ``{}``.

Each request becomes an :class:`~cogumi.sidecar.core.Exchange` and is handed
to the sidecar's shipper with :func:`sink_event` as the event builder, so
redaction, secret matching, throttling, batching and the watermark are the
sidecar's own, not a second copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cogumi.sidecar.core import (
    Exchange,
    Policy,
    Preview,
    exchange_event,
    integrity_hash,
    parse_authority,
    render_head,
)
from cogumi.sidecar.http1 import BODY, END, READ_SIZE, Head, MessageError, MessageReader
from cogumi.sidecar.proxy import Opened
from cogumi.sidecar.shipper import BuildEvent

Submit = Callable[[Exchange, Policy, BuildEvent], None]

log = logging.getLogger("cogumi.sink")

ANSWER = b"{}"


def sink_event(ex: Exchange, policy: Policy, *, scheme: str = "http") -> dict[str, Any]:
    """The sidecar's event for this exchange, restated as what it is: a request
    that reached the attacker sink, whatever the name it was sent to."""
    event = exchange_event(ex, policy)
    event["type"] = "request"
    event["destination"]["classification"] = "attacker_sink"
    payload = event["payload_redacted"]
    payload["summary"] = (
        f"{ex.method} {scheme}://{ex.host}{event['destination']['path'][:200]} received by "
        f"the attacker sink, {ex.bytes_out} B sent"
    )
    payload["scheme"] = scheme
    event["integrity_hash"] = integrity_hash(payload)
    return event


def _target(head: Head, default_host: str, port: int) -> tuple[str, int, str]:
    """Host, port and path the client addressed (Host header or an absolute URI)."""
    if "://" in head.url:
        parts = urlsplit(head.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return (parts.hostname or default_host).lower(), parts.port or port, path
    host = default_host
    with contextlib.suppress(ValueError):
        host, _ = parse_authority(head.get("host") or "", default_port=port)
    return host, port, head.url or "/"


class SinkServer:
    """One listener (plain or TLS) of the sink."""

    def __init__(
        self,
        *,
        policy: Callable[[], Policy],
        submit: Submit,
        opened: Opened,
        preview_bytes: int,
        idle_timeout: float,
        default_host: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.policy, self.submit, self.opened = policy, submit, opened
        self.preview_bytes = preview_bytes
        self.idle_timeout = idle_timeout
        self.default_host = default_host
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.server = await asyncio.start_server(
            self._on_client, host, port, ssl=self.tls, limit=READ_SIZE, reuse_address=True
        )
        sockname = self.server.sockets[0].getsockname()
        self.port = int(sockname[1])
        return sockname[0], self.port

    async def close(self, grace: float) -> None:
        if self.server is not None:
            self.server.close()
        if self._connections:
            _, pending = await asyncio.wait(self._connections, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(MessageReader(reader), writer)
        except (ConnectionError, asyncio.CancelledError, ssl.SSLError, TimeoutError):
            pass
        except MessageError:
            writer.write(render_head("HTTP/1.1 400 Bad Request", [("Content-Length", "0"),
                                                                  ("Connection", "close")]))  # fmt: skip
        except Exception:
            log.exception("sink connection failed")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, messages: MessageReader, writer: asyncio.StreamWriter) -> None:
        while True:
            async with asyncio.timeout(self.idle_timeout):
                item = await messages.next()
            if item is None:
                return
            head = item[1]
            assert isinstance(head, Head)
            await self._answer(head, messages, writer)
            if not head.keep_alive:
                return

    async def _answer(
        self, head: Head, messages: MessageReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port, path = _target(head, self.default_host, self.port)
        ex = Exchange(method=head.method, host=host, port=port, path=path,
                      request_headers=head.headers, request_body=Preview(self.preview_bytes))  # fmt: skip
        policy = self.policy()
        self.opened(ex)
        try:
            if (head.get("expect") or "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await _drain_body(messages, ex)
            body = b"" if head.method == "HEAD" else ANSWER
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER))),
                       ("Connection", "keep-alive" if head.keep_alive else "close")]  # fmt: skip
            ex.status_code, ex.response_headers, ex.bytes_in = 200, headers[:2], len(body)
            ex.response_body.add(body)
            writer.write(render_head("HTTP/1.1 200 OK", headers) + body)
            await writer.drain()
        except BaseException:
            ex.error = ex.error or "client_gone"
            raise
        finally:
            self.submit(ex, policy, self._event)

    def _event(self, ex: Exchange, policy: Policy) -> dict[str, Any]:
        return sink_event(ex, policy, scheme=self.scheme)


async def _drain_body(messages: MessageReader, ex: Exchange) -> None:
    while True:
        item = await messages.next()
        if item is None:
            raise ConnectionResetError("the client closed mid-request")
        if item[0] == END:
            return
        if item[0] == BODY and isinstance(item[1], bytes):
            ex.bytes_out += len(item[1])
            ex.request_body.add(item[1])
