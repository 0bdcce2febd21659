"""A real HTTP(S) server on 127.0.0.1 that plays a customer's agent endpoint.

Plain asyncio, no framework: each route answers with a fixed status, body,
headers and an optional delay, and every request received is recorded so
tests can check exactly what the product sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None

    def encode(self) -> tuple[bytes, str]:
        if self.raw is not None:
            return self.raw, "text/plain"
        return json.dumps(self.body if self.body is not None else {}).encode(), "application/json"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


REASONS = {200: "OK", 301: "Moved", 302: "Found", 307: "Temporary Redirect", 404: "Not Found"}


class AgentServer:
    """``async with AgentServer({("POST", "/health"): Reply()}) as server: server.url``."""

    def __init__(
        self, routes: dict[tuple[str, str], Reply], *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.routes = routes
        self.ssl_context = ssl_context
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._port: int | None = None

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> AgentServer:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> Received:
        request_line = (await reader.readline()).decode("latin-1").strip()
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return Received(method, path, headers, body)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await self._read(reader)
            self.received.append(request)
            reply = self.routes.get((request.method, request.path.split("?")[0]), Reply(404))
            if reply.delay:
                await asyncio.sleep(reply.delay)
            body, content_type = reply.encode()
            head = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            head += ["Connection: close", "", ""]
            writer.write("\r\n".join(head).encode() + body)
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for localhost/127.0.0.1."""
    from tests.sidecar.servers import self_signed

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(directory))
    return context
