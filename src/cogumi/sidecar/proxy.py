"""The asyncio shell of the forward proxy: sockets in, exchanges out.

Plain HTTP (absolute-form URIs) is forwarded with keep-alive on both sides and
bodies streamed chunk by chunk; CONNECT is tunnelled byte for byte; requests to
sink domains are answered here and never leave the network. Every exchange
ends as one record through ``emit`` (turned into an event by the pure
:mod:`core` once it passed the throttle), also when the upstream fails or the
sidecar shuts down mid-exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from cogumi.sidecar.core import (
    BadProxyRequest,
    Exchange,
    Policy,
    Preview,
    end_to_end,
    parse_absolute_uri,
    parse_authority,
    render_head,
)
from cogumi.sidecar.http1 import (
    BODY,
    END,
    LAST_CHUNK,
    READ_SIZE,
    Head,
    MessageError,
    MessageReader,
    chunk,
)
from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.upstream import Upstream, UpstreamError, UpstreamPool, open_upstream

log = logging.getLogger("cogumi.sidecar")

SINK_PREVIEW_LIMIT = 32 * 1024
FLUSH_AT = 64 * 1024
NO_BODY_STATUS = frozenset({204, 304})

Emit = Callable[[Exchange, Policy], None]
Opened = Callable[[Exchange], None]


class ClientGone(Exception):
    """The client closed its side; nothing more can be sent to it."""


class Corked:
    """Collects small writes into one send; flushes before waiting on a read."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.out = bytearray()

    async def send(self, data: bytes) -> None:
        self.out += data
        if len(self.out) >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self.out:
            self.writer.write(bytes(self.out))
            self.out.clear()
        await self.writer.drain()


def _simple_response(status: int, reason: str, body: bytes, *, close: bool) -> bytes:
    headers = [
        (
            "Content-Type",
            "application/json" if body.startswith(b"{") else "text/plain; charset=utf-8",
        ),
        ("Content-Length", str(len(body))),
        ("Connection", "close" if close else "keep-alive"),
    ]
    return render_head(f"HTTP/1.1 {status} {reason}", headers) + body


class ProxyServer:
    """Owns the listening socket, the upstream pool and the live connections."""

    def __init__(
        self,
        options: SidecarOptions,
        policy: Callable[[], Policy],
        emit: Emit,
        opened: Opened | None = None,
    ) -> None:
        self.options = options
        self.policy = policy
        self.emit = emit
        # Told when an exchange starts (its ``emit`` always follows), so the
        # shipper's watermark can wait for exchanges still in flight.
        self.opened = opened
        self.pool = UpstreamPool(connect_timeout=options.connect_timeout)
        self.server: asyncio.base_events.Server | None = None
        self._idle: dict[asyncio.Task[Any], bool] = {}
        self.started_at = time.time()
        self.connections_accepted = 0

    async def start(self) -> tuple[str, int]:
        host, port = self.options.listen_address
        self.server = await asyncio.start_server(
            self._on_client, host, port, limit=READ_SIZE, reuse_address=True, backlog=1024
        )
        sockname = self.server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, let busy exchanges finish for ``grace`` s, then cut."""
        if self.server is not None:
            self.server.close()
        for task, idle in list(self._idle.items()):
            if idle:
                task.cancel()
        busy = [t for t in self._idle if not t.done()]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self.pool.close_all()

    # --- connections ----------------------------------------------------------
    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._idle[task] = True
        self.connections_accepted += 1
        try:
            await self._serve(reader, writer, task)
        except (ClientGone, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("sidecar connection failed")
        finally:
            self._idle.pop(task, None)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[Any]
    ) -> None:
        messages = MessageReader(reader)
        client = Corked(writer)
        while True:
            self._idle[task] = True
            try:
                if messages.buffered:
                    item = await messages.next()
                else:
                    async with asyncio.timeout(self.options.client_idle_timeout):
                        item = await messages.next()
            except TimeoutError:
                return
            except MessageError as exc:
                writer.write(_simple_response(400, "Bad Request", f"{exc}\n".encode(), close=True))
                return
            if item is None:
                return
            self._idle[task] = False
            head = item[1]
            assert isinstance(head, Head)
            if head.method == "CONNECT":
                await self._tunnel(head, messages, reader, client)
                return
            if not await self._exchange(head, messages, client):
                return

    async def _exchange(self, head: Head, messages: MessageReader, client: Corked) -> bool:
        """One request/response; returns whether the client connection stays open."""
        if not head.url.lower().startswith("http://"):
            return await self._local(head, messages, client)
        try:
            host, port, path = parse_absolute_uri(head.url)
        except BadProxyRequest as exc:
            await client.send(_simple_response(400, "Bad Request", f"{exc}\n".encode(), close=True))
            await client.flush()
            return False
        if head.upgrade:
            await client.send(_simple_response(501, "Not Implemented", b"protocol upgrades are not proxied\n", close=True))  # fmt: skip
            await client.flush()
            return False
        policy = self.policy()
        sink = policy.is_sink(host)
        limit = SINK_PREVIEW_LIMIT if sink else self.options.preview_bytes
        ex = Exchange(method=head.method, host=host, port=port, path=path,
                      request_headers=head.headers, request_body=Preview(limit),
                      response_body=Preview(self.options.preview_bytes))  # fmt: skip
        if self.opened is not None:
            self.opened(ex)
        try:
            if (head.get("expect") or "").lower() == "100-continue":
                client.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if sink:
                return await self._answer_sink(head, messages, client, ex)
            return await self._forward(head, messages, client, ex)
        except asyncio.CancelledError:
            ex.error = ex.error or "sidecar_shutdown"
            raise
        finally:
            self.emit(ex, policy)

    async def _local(self, head: Head, messages: MessageReader, client: Corked) -> bool:
        """Origin-form requests address the sidecar itself: only /healthz exists."""
        await _drain_body(messages, None)
        if head.url.split("?", 1)[0] == "/healthz" and head.method in ("GET", "HEAD"):
            body = json.dumps({"ok": True, "uptime_sec": round(time.time() - self.started_at, 1)})
            await client.send(_simple_response(200, "OK", body.encode(), close=not head.keep_alive))
            await client.flush()
            return head.keep_alive
        message = b"this is a forward proxy: send absolute-form http:// URIs or CONNECT\n"
        await client.send(_simple_response(400, "Bad Request", message, close=True))
        await client.flush()
        return False

    async def _answer_sink(
        self, head: Head, messages: MessageReader, client: Corked, ex: Exchange
    ) -> bool:
        await _drain_body(messages, ex)
        ex.intercepted = True
        ex.status_code = 200
        ex.response_headers = [("Content-Type", "application/json"), ("Content-Length", "2")]
        ex.bytes_in = 2
        ex.response_body.add(b"{}")
        await client.send(_simple_response(200, "OK", b"{}", close=not head.keep_alive))
        await client.flush()
        return head.keep_alive

    async def _forward(
        self, head: Head, messages: MessageReader, client: Corked, ex: Exchange
    ) -> bool:
        headers = [(n, v) for n, v in end_to_end(head.headers) if n.lower() != "expect"]
        if not any(n.lower() == "host" for n, _ in headers):
            headers.insert(0, ("Host", ex.host if ex.port == 80 else f"{ex.host}:{ex.port}"))
        if head.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        request_head = render_head(f"{head.method} {ex.path} HTTP/1.1", headers)
        try:
            upstream, response = await self._send_request(request_head, head, messages, ex)
        except UpstreamError as exc:
            return await self._fail(client, ex, exc, messages)
        return await self._relay_response(head, response, upstream, client, ex)

    async def _send_request(
        self, request_head: bytes, head: Head, messages: MessageReader, ex: Exchange
    ) -> tuple[Upstream, Head]:
        """Send the request (retrying once on a stale pooled connection when no
        body bytes were sent yet) and read the response head."""
        for attempt in (1, 2):
            upstream = await self.pool.acquire(ex.host, ex.port)
            try:
                await _stream_request(upstream, request_head, head, messages, ex)
                response = await upstream.read_head(self.options.upstream_timeout, ex.method)
                return upstream, response
            except UpstreamError as exc:
                upstream.close()
                if not (exc.stale and upstream.reused and ex.bytes_out == 0 and attempt == 1):
                    raise
        raise AssertionError("unreachable")

    async def _relay_response(
        self, head: Head, response: Head, upstream: Upstream, client: Corked, ex: Exchange
    ) -> bool:
        ex.status_code = response.status
        ex.response_headers = response.headers
        no_body = ex.method == "HEAD" or response.status in NO_BODY_STATUS
        headers = end_to_end(response.headers)
        keep = head.keep_alive
        rechunk = False
        if not no_body and (response.chunked or response.content_length is None):
            if head.version == "1.1":
                rechunk = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                keep = False
        headers.append(("Connection", "keep-alive" if keep else "close"))
        await client.send(render_head(f"HTTP/1.1 {response.status} {response.reason}", headers))
        complete = True
        if not no_body:
            complete = await self._relay_body(upstream, client, ex, rechunk)
        await client.flush()
        if complete and response.keep_alive and upstream.finished:
            self.pool.release(upstream)
        else:
            upstream.close()
        return keep and complete

    async def _relay_body(
        self, upstream: Upstream, client: Corked, ex: Exchange, rechunk: bool
    ) -> bool:
        try:
            async for data in upstream.body(self.options.upstream_timeout, client.flush):
                ex.bytes_in += len(data)
                ex.response_body.add(data)
                await client.send(chunk(data) if rechunk else data)
        except UpstreamError as exc:
            ex.error, ex.error_detail = exc.code, f"{exc.detail} (mid-response)"
            return False
        if rechunk:
            await client.send(LAST_CHUNK)
        return True

    async def _fail(
        self, client: Corked, ex: Exchange, exc: UpstreamError, messages: MessageReader
    ) -> bool:
        ex.error, ex.error_detail = exc.code, exc.detail
        ex.status_code = exc.status
        if messages.in_message:
            # What the agent tried to send is evidence even if it never arrived.
            with contextlib.suppress(TimeoutError, MessageError, ConnectionError):
                async with asyncio.timeout(self.options.upstream_timeout):
                    await _drain_body(messages, ex)
        reason = "Gateway Timeout" if exc.status == 504 else "Bad Gateway"
        body = f"{exc.status} {reason}: {exc.detail} ({ex.host}:{ex.port})\n".encode()
        await client.send(_simple_response(exc.status, reason, body, close=True))
        await client.flush()
        return False

    # --- CONNECT ----------------------------------------------------------------
    async def _tunnel(
        self, head: Head, messages: MessageReader, reader: asyncio.StreamReader, client: Corked
    ) -> None:
        try:
            host, port = parse_authority(head.url)
        except BadProxyRequest as exc:
            await client.send(_simple_response(400, "Bad Request", f"{exc}\n".encode(), close=True))
            await client.flush()
            return
        policy = self.policy()
        ex = Exchange(method="CONNECT", host=host, port=port, request_headers=head.headers)
        if self.opened is not None:
            self.opened(ex)
        try:
            await self._open_tunnel(messages, reader, client, ex, policy)
        except asyncio.CancelledError:
            ex.error = ex.error or "sidecar_shutdown"
            raise
        finally:
            self.emit(ex, policy)

    async def _open_tunnel(
        self,
        messages: MessageReader,
        reader: asyncio.StreamReader,
        client: Corked,
        ex: Exchange,
        policy: Policy,
    ) -> None:
        if policy.is_sink(ex.host):
            ex.status_code, ex.error = 403, "sink_domain"
            ex.error_detail = "sink domain: tunnels to it are refused so nothing leaves the network"
            body = f"403 Forbidden: {ex.host} is a sink domain; the sidecar records it and refuses tunnels to it\n"  # fmt: skip
            await client.send(_simple_response(403, "Forbidden", body.encode(), close=True))
            await client.flush()
            return
        try:
            up_reader, up_writer = await open_upstream(
                ex.host, ex.port, self.options.connect_timeout
            )
        except UpstreamError as exc:
            await self._fail(client, ex, exc, messages)
            return
        ex.status_code = 200
        client.writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if messages.leftover:
            up_writer.write(messages.leftover)
            ex.bytes_out += len(messages.leftover)
        try:
            await _pipe_both(reader, client.writer, up_reader, up_writer, ex)
        finally:
            up_writer.close()


async def _drain_body(messages: MessageReader, ex: Exchange | None) -> None:
    while True:
        item = await messages.next()
        if item is None or item[0] == END:
            return
        if item[0] == BODY and ex is not None:
            data = item[1]
            assert isinstance(data, bytes)
            ex.bytes_out += len(data)
            ex.request_body.add(data)


async def _stream_request(
    upstream: Upstream, request_head: bytes, head: Head, messages: MessageReader, ex: Exchange
) -> None:
    """Send head and body upstream as the client's bytes arrive."""
    out = Corked(upstream.writer)
    await out.send(request_head)
    try:
        while True:
            if not messages.buffered:
                await out.flush()
            item = await messages.next()
            if item is None:
                raise ClientGone
            kind, data = item
            if kind == END:
                break
            if kind == BODY and isinstance(data, bytes):
                ex.bytes_out += len(data)
                ex.request_body.add(data)
                await out.send(chunk(data) if head.chunked else data)
        if head.chunked:
            await out.send(LAST_CHUNK)
        await out.flush()
    except (ConnectionError, OSError) as exc:
        raise UpstreamError.from_os(exc, stale=ex.bytes_out == 0) from exc


async def _pipe_both(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    u_reader: asyncio.StreamReader,
    u_writer: asyncio.StreamWriter,
    ex: Exchange,
) -> None:
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, outbound: bool) -> None:
        try:
            while data := await src.read(READ_SIZE):
                if outbound:
                    ex.bytes_out += len(data)
                else:
                    ex.bytes_in += len(data)
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                with contextlib.suppress(OSError):
                    dst.write_eof()
        except (ConnectionError, OSError) as exc:
            ex.error = ex.error or ("client_reset" if outbound else "upstream_reset")
            ex.error_detail = str(exc)
            dst.close()

    await asyncio.gather(pipe(c_reader, u_writer, True), pipe(u_reader, c_writer, False))
