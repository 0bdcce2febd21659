"""A minimal HTTP/1.1 client for the few calls the sidecar makes to the API
(ingest, heartbeat, config): one short connection per call, JSON in and out.

A general-purpose client library would double the sidecar's memory for a
handful of requests a minute; this one reuses the proxy's parser. It never
reads proxy settings from the environment, so the sidecar cannot end up
sending its own events through itself.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from cogumi.sidecar.http1 import BODY, END, HEAD, READ_SIZE, Head, MessageError, MessageReader

MAX_ANSWER_BYTES = 1024 * 1024

_JSON: Final = msgspec.json.Encoder()


def _encode(payload: Any) -> bytes:
    """Compact JSON, by msgspec (a batch of events encodes several times faster than
    with the stdlib); what msgspec refuses (a lone surrogate, an integer past 64
    bits) the stdlib writes, as before."""
    try:
        return _JSON.encode(payload)
    except (msgspec.EncodeError, UnicodeEncodeError, OverflowError, TypeError):
        return json.dumps(payload, separators=(",", ":")).encode()


class ApiError(Exception):
    """The API could not be reached or did not answer HTTP."""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return Head(headers=self.headers).get(name)

    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    def __init__(self, *, timeout_sec: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        self.timeout_sec = timeout_sec
        self._tls = tls  # default: the system's trust store, made on first https call

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        payload: Any = None,
        content: bytes | None = None,
    ) -> ApiResponse:
        """One call; the body is ``payload`` as compact JSON, or ``content`` as given
        (JSON already encoded)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(f"bad API URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        if content is not None and payload is not None:
            raise ValueError("give payload or content, not both")
        body = content if content is not None else b""
        if payload is not None:
            body = _encode(payload)
        head = [f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                f"Host: {parts.netloc}", "Connection: close", "Accept: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        if payload is not None or content is not None:
            head.append("Content-Type: application/json")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(self.timeout_sec):
                return await self._exchange(parts.hostname, port, tls, request)
        except (TimeoutError, OSError, MessageError) as exc:
            raise ApiError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, host: str, port: int, tls: bool, request: bytes) -> ApiResponse:
        tls_context = self._context() if tls else None
        reader, writer = await asyncio.open_connection(host, port, ssl=tls_context, limit=READ_SIZE)
        try:
            writer.write(request)
            return await _read_answer(MessageReader(reader, response=True))
        finally:
            writer.close()

    async def get(self, url: str, *, headers: dict[str, str]) -> ApiResponse:
        return await self.request("GET", url, headers=headers)

    async def post(self, url: str, *, headers: dict[str, str], payload: Any) -> ApiResponse:
        return await self.request("POST", url, headers=headers, payload=payload)

    async def aclose(self) -> None:
        """Nothing is kept open between calls."""


async def _read_answer(messages: MessageReader) -> ApiResponse:
    head: Head | None = None
    body = bytearray()
    while True:
        item = await messages.next()
        if item is None:
            if head is not None and head.content_length is None and not head.chunked:
                break  # close-delimited
            raise ApiError("the API closed the connection mid-answer")
        kind, data = item
        if kind == HEAD and isinstance(data, Head) and not 100 <= data.status < 200:
            head = data
        elif kind == BODY and isinstance(data, bytes) and head is not None:
            body += data
            if len(body) > MAX_ANSWER_BYTES:
                raise ApiError("the API answer is too large")
        elif kind == END and head is not None:
            break
    assert head is not None
    return ApiResponse(head.status, head.headers, bytes(body))
