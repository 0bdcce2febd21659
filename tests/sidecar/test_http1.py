"""The sidecar's CONNECT fast path (:func:`parse_connect_head`) held to llhttp: it
may decline any head (llhttp then parses it), but a head it takes must be one
llhttp takes too, read the same way, ending at the same byte."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import random
import shutil
import subprocess
import threading
from typing import Any

import httptools
import httpx
import pytest

from cogumi.sidecar.http1 import parse_connect_head

Parsed = tuple[str, str, list[tuple[str, str]], str, int]


class _Seen:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))


def llhttp(data: bytes) -> Parsed | None:
    """What llhttp makes of ``data``: a complete CONNECT head, or None."""
    seen = _Seen()
    parser = httptools.HttpRequestParser(seen)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade as exc:
        method = parser.get_method().decode("latin-1")
        return method, seen.url.decode("latin-1"), seen.headers, parser.get_http_version(), exc.args[0]  # fmt: skip
    except httptools.HttpParserError:
        return None
    return None


def fast(data: bytes) -> Parsed | None:
    parsed = parse_connect_head(data)
    if parsed is None:
        return None
    head, end = parsed
    return head.method, head.url, head.headers, head.version, end


def agrees(data: bytes) -> bool:
    """The fast path declined, or read ``data`` exactly as llhttp did. (Taken?)"""
    ours = fast(data)
    if ours is not None:
        assert ours == llhttp(data), data
    return ours is not None


# --- pieces of heads: plain ones (most of the time) and odd ones ----------------------------
METHODS = ([b"CONNECT"], [b"connect", b"CONNECTX", b"GET", b"CONNECT\x00"])
TARGETS = ([b"example.com:443", b"127.0.0.1:8443", b"[::1]:443", b"a-b_c.example:1"],
           [b"example.com", b"user@host:443", b"host:443/path", b"h%41:1", b"caf\xe9:1", b"",
            b"host:port", b"*", b"a b:1"])  # fmt: skip
VERSIONS = ([b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1",
                                         b"HTTP/1.1 ", b"HTTP/11", b"HTTP/1."])  # fmt: skip
SPACES = ([b" "], [b"  ", b"\t", b""])
EOLS = ([b"\r\n"], [b"\n", b"\r", b"\r\r\n"])
HEADERS = (
    [b"Host: example.com:443", b"User-Agent: curl/8.5.0", b"Proxy-Connection: Keep-Alive",
     b"Proxy-Authorization: Basic dXNlcjpwYXNz", b"X-Empty:", b"X-Spaces:   ",
     b"X-Trailing: value  \t", b"X-Tab:\tin\tside", b"X-Obs: caf\xe9", b"Connection: close",
     b"Connection: upgrade", b"Upgrade: h2c", b"Keep-Alive: timeout=5", b"Host: second",
     b"X-Long: " + b"v" * 5000, b"x-lower: v", b"X-Colon: a:b:c", b"X-Quote: \"q\"",
     b"Expect: 100-continue", b"Accept: */*"],
    [b"X-Nul: a\x00b", b"X-Del: a\x7fb", b"X-Ctl: a\x01b", b"X-Space-Before : v", b"NoColon",
     b"X@Y: v", b" X-Leading-Space: v", b"Content-Length: 0", b"Content-Length: abc",
     b"Transfer-Encoding: chunked", b":no-name", b"X-Cr: a\rb"],
)  # fmt: skip
TRAILERS = [b"", b"", b"\x16\x03\x01\x02\x00\x01\x00", b"GET / HTTP/1.1\r\n\r\n"]


def pick(rng: random.Random, pieces: tuple[list[bytes], list[bytes]]) -> bytes:
    return rng.choice(pieces[0] if rng.random() < 0.9 else pieces[1])


def random_head(rng: random.Random) -> bytes:
    eol = pick(rng, EOLS)
    line = (pick(rng, METHODS) + pick(rng, SPACES) + pick(rng, TARGETS)
            + pick(rng, SPACES) + pick(rng, VERSIONS))  # fmt: skip
    headers = [pick(rng, HEADERS) for _ in range(rng.randint(0, 5))]
    head = eol.join([line, *headers]) + eol + eol
    if rng.random() < 0.05:  # an obs-fold continuation line
        head = head.replace(b"\r\n", b"\r\n folded\r\n", 1)
    return head + rng.choice(TRAILERS)


def test_the_fast_path_reads_every_head_it_takes_as_llhttp_does() -> None:
    rng = random.Random(20261128)
    taken = declined_but_valid = 0
    for _ in range(20_000):
        data = random_head(rng)
        if agrees(data):
            taken += 1
        elif llhttp(data) is not None:
            declined_but_valid += 1
    # Both branches were exercised: plain heads taken, unusual valid ones left to llhttp.
    assert taken > 2_000
    assert declined_but_valid > 200


@pytest.mark.parametrize(
    "data",
    [
        b"CONNECT a:1 HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  # obs-fold
        b"CONNECT a:1 HTTP/1.1\nHost: a\n\n",  # bare LF
        b"CONNECT a:1 HTTP/1.2\r\n\r\n",
        b"CONNECT  a:1 HTTP/1.1\r\n\r\n",
        b"connect a:1 HTTP/1.1\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\nX : v\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n",  # not complete yet
        b"CONNECT a:1 HTTP/1.1\r\nX: " + b"v" * 70_000 + b"\r\n\r\n",  # over the head limit
    ],
)
def test_unusual_or_incomplete_heads_are_left_to_llhttp(data: bytes) -> None:
    assert fast(data) is None


def test_what_follows_the_head_is_not_part_of_it() -> None:
    head = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX:  v \t\r\n\r\n"
    parsed = fast(head + b"\x16\x03\x01")
    assert parsed == ("CONNECT", "example.com:443",
                      [("Host", "example.com:443"), ("X", "v \t")], "1.1", len(head))  # fmt: skip
    assert parsed == llhttp(head + b"\x16\x03\x01")


# --- what real clients send ------------------------------------------------------------
def _capture(client: Any) -> bytes:
    """The first bytes a proxy client sends: a one-shot server that records and hangs up."""
    got: list[bytes] = []
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        async def main() -> None:
            async def on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                got.append(await reader.readuntil(b"\r\n\r\n"))
                writer.close()

            server = await asyncio.start_server(on, "127.0.0.1", 0)
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            for _ in range(1000):  # at most 10 s
                if got:
                    break
                await asyncio.sleep(0.01)
            server.close()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    with contextlib.suppress(Exception):  # the server hangs up on purpose
        client(port[0])
    thread.join(15)
    assert got, "the client sent nothing"
    return got[0]


def _curl(port: int) -> None:
    curl = shutil.which("curl")
    assert curl is not None
    subprocess.run([curl, "-s", "-m", "5", "-x", f"http://127.0.0.1:{port}",
                    "https://example.com/"], check=False)  # fmt: skip


def _httpx(port: int) -> None:
    httpx.get("https://example.com/", proxy=f"http://127.0.0.1:{port}", timeout=5)


def _stdlib(port: int) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5)
    conn.set_tunnel("example.com", 443)
    conn.request("GET", "/")


@pytest.mark.parametrize("client", [_curl, _httpx, _stdlib], ids=["curl", "httpx", "http.client"])
def test_real_clients_connect_heads_take_the_fast_path(client: Any) -> None:
    head = _capture(client)
    assert agrees(head), head  # taken, and read as llhttp reads it
