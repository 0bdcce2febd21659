"""HTTP/1.x message reading on asyncio streams, parsed by httptools (llhttp).

:class:`MessageReader` turns the bytes of one connection into a queue of
``Head`` / body chunk / end items, so the proxy can stream bodies chunk by
chunk and never hold a whole one. Chunked framing is decoded here and
re-encoded by :func:`chunk`, which keeps the proxy free to choose the framing
on each side of the hop.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import httptools

READ_SIZE: Final = 256 * 1024
MAX_HEAD_BYTES: Final = 64 * 1024

HEAD: Final = 0
BODY: Final = 1
END: Final = 2


class MessageError(Exception):
    """The peer sent bytes that are not HTTP/1.x (or a head that is too large)."""


HOP_BY_HOP_B: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
     b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)  # fmt: skip
NOTED: Final = HOP_BY_HOP_B | {b"content-length", b"host", b"expect"}
"""Header names (lowered) whose value :meth:`Head.note` records while parsing."""


@dataclass(slots=True)
class Head:
    method: str = ""
    url: str = ""
    status: int = 0
    reason: str = ""
    version: str = "1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    keep_alive: bool = True
    upgrade: bool = False
    # Noted while parsing, so the hot path never scans the headers again.
    chunked: bool = False
    content_length: int | None = None
    has_host: bool = False
    expect_continue: bool = False
    hop: bool = False  # some header must not be forwarded as is (hop-by-hop, Expect)

    def get(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for n, v in self.headers if n.lower() == lowered), None)

    def note(self, low: bytes, value: bytes) -> None:
        """Record what a header in ``NOTED`` (``low``: its lowered name) says."""
        if low == b"content-length":
            text = value.strip()
            if self.content_length is None and text.isdigit():
                self.content_length = int(text)
            return
        if low == b"host":
            self.has_host = True
        elif low == b"expect":  # answered by the proxy, never forwarded
            self.expect_continue = value.strip().lower() == b"100-continue"
            self.hop = True
        else:
            self.hop = True
            if low == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True


Item = tuple[int, Head | bytes | None]

# A CONNECT head in its plainest form (authority-form target, HTTP/1.0 or 1.1, CRLF
# line ends, token header names, no obs-fold): what proxy clients send. Anything
# else, and any head with a body-framing header, is left to llhttp.
_CONNECT_HEAD: Final = re.compile(
    rb"CONNECT ([A-Za-z0-9._\[\]:-]+) HTTP/1\.([01])\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*)\r\n"
)
_HEADER_LINE: Final = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r\n"
)
_FRAMING: Final = (b"content-length", b"transfer-encoding")


def parse_connect_head(data: bytes) -> tuple[Head, int] | None:
    """The head of a plain ``CONNECT`` at the start of ``data`` and where it ends, or
    None when ``data`` is anything else (then llhttp parses it, and decides).

    Proxy clients open every HTTPS connection with such a head, and llhttp answers
    each with an upgrade exception and its traceback; this accepts only heads that
    llhttp parses the same way (``tests/sidecar/test_http1.py`` holds it to that)."""
    match = _CONNECT_HEAD.match(data)
    if match is None or match.end() > MAX_HEAD_BYTES:
        return None
    head = Head(method="CONNECT", url=match[1].decode("latin-1"), version="1." + chr(match[2][0]))
    headers = head.headers
    for name, value in _HEADER_LINE.findall(match[3]):
        low = name.lower()
        if low in NOTED:
            if low in _FRAMING:
                return None
            head.note(low, value)
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    head.upgrade = True
    return head, match.end()


class MessageReader:
    """Feeds a StreamReader into an httptools parser and queues what it sees."""

    def __init__(self, reader: asyncio.StreamReader, *, response: bool = False) -> None:
        self.reader = reader
        self.items: deque[Item] = deque()
        self.parser: httptools.HttpRequestParser | httptools.HttpResponseParser = (
            httptools.HttpResponseParser(self) if response else httptools.HttpRequestParser(self)
        )
        self._response = response
        self._head = Head()
        self._url = bytearray()
        self._head_bytes = 0
        self._in_head = False
        self.eof = False
        self.leftover = b""  # bytes after an upgrade/CONNECT head: tunnel data
        self.in_message = False  # a head was taken and its END not yet

    # httptools callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self._head = Head()
        self._url.clear()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_status(self, status: bytes) -> None:
        self._head.reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        low = name.lower()
        if low in NOTED:
            self._head.note(low, value)

    def on_headers_complete(self) -> None:
        head, parser = self._head, self.parser
        head.version = parser.get_http_version()
        head.keep_alive = parser.should_keep_alive()
        head.upgrade = parser.should_upgrade()
        if isinstance(parser, httptools.HttpResponseParser):
            head.status = parser.get_status_code()
        else:
            head.method = parser.get_method().decode("ascii", "replace")
            head.url = self._url.decode("latin-1")
        self._in_head = False
        self.items.append((HEAD, head))

    def on_body(self, body: bytes) -> None:
        self.items.append((BODY, body))

    def on_message_complete(self) -> None:
        self.items.append((END, None))

    # reading ---------------------------------------------------------------
    @property
    def buffered(self) -> bool:
        return bool(self.items)

    async def next(self) -> Item | None:
        """Next item, reading from the network only when the queue is empty;
        ``None`` at end of stream."""
        while not self.items:
            if self.eof:
                return None
            data = await self.reader.read(READ_SIZE)
            if not data:
                self.eof = True
                return None
            self.feed(data)
        item = self.items.popleft()
        if item[0] != BODY:
            self.in_message = item[0] == HEAD
        return item

    def feed(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise MessageError("message head too large")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.leftover = data[exc.args[0] :]
            self.eof = True  # the rest of the connection is not HTTP any more
        except httptools.HttpParserError as exc:
            raise MessageError(str(exc) or type(exc).__name__) from exc


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (empty data is not allowed here: use LAST_CHUNK)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
