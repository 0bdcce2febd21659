"""HTTP/1.1 corner cases of the proxy core, on raw sockets against a scripted
origin: pipelining, re-framing, HEAD, 100-continue, half-closes, a stale pooled
connection, broken upstreams, clients that leave, backpressure and shutdown.
Each checks what the client got, what the origin got and the recorded event."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from cogumi.sidecar.runner import Sidecar
from cogumi.sidecar.upstream import Resolver, UpstreamConn, UpstreamPool
from cogumi.sidecar.upstream import connect as connect_upstream
from tests.sidecar.conftest import SidecarFactory
from tests.sidecar.servers import Ingest, Served

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_origin(handler: Handler) -> AsyncIterator[tuple[int, list[str]]]:
    """A raw origin; ``seen`` gets one entry per accepted connection."""
    seen: list[str] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("conn")
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    raw = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    first, *lines = raw[:-4].split("\r\n")
    return first, {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    first, headers = await read_head(reader)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return first, headers, body


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += data[:-2]


async def read_response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    first, headers = await read_head(reader)
    if headers.get("transfer-encoding") == "chunked":
        return first, headers, await read_chunked(reader)
    if "content-length" in headers:
        return first, headers, await reader.readexactly(int(headers["content-length"]))
    return first, headers, await reader.read()


def ok(body: bytes, extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra.encode(), body)


async def connect(sidecar: Sidecar) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert sidecar.address is not None
    return await asyncio.open_connection("127.0.0.1", sidecar.address[1])


async def echo_path(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its own request line and body."""
    while True:
        first, _, body = await read_request(reader)
        writer.write(ok(first.encode() + b"|" + body))
        await writer.drain()


async def test_pipelined_requests_are_answered_in_order(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with scripted_origin(echo_path) as (port, seen), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        base = f"http://127.0.0.1:{port}"
        writer.write(
            f"GET {base}/a HTTP/1.1\r\nHost: x\r\n\r\n"
            f"POST {base}/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            f"GET {base}/c HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        writer.close()
        events = await recorder.wait_events(3)
    assert bodies == [b"GET /a HTTP/1.1|", b"POST /b HTTP/1.1|hello", b"GET /c HTTP/1.1|"]
    assert [e["destination"]["path"] for e in events] == ["/a", "/b", "/c"]
    assert events[1]["http"]["bytes_out"] == 5
    assert seen == ["conn"], "one upstream connection, reused"


async def test_chunked_and_close_delimited_responses_are_reframed(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            first, _, _ = await read_request(reader)
            if "/chunked" not in first:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")  # fmt: skip
            await writer.drain()
        # close-delimited: no length, the end is the close
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/chunked HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        _, headers, body = await read_response(reader)
        assert (headers["transfer-encoding"], body) == ("chunked", b"hello world")
        writer.write(f"GET http://127.0.0.1:{port}/eof HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        _, headers, body = await read_response(reader)
        assert (headers["transfer-encoding"], body) == ("chunked", b"until the end")
        assert headers["connection"] == "keep-alive"
        writer.close()
        # An HTTP/1.0 client cannot take chunks: the body ends with the connection.
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/eof10 HTTP/1.0\r\n\r\n".encode())
        raw = await reader.read()
        assert raw.endswith(b"\r\n\r\nuntil the end") and b"connection: close" in raw.lower()
        events = await recorder.wait_events(3)
    assert [e["http"]["bytes_in"] for e in events] == [11, 13, 13]
    assert events[1]["payload_redacted"]["response_body_redacted_preview"] == "until the end"


async def test_head_and_100_continue(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    got: list[tuple[str, dict[str, str], bytes]] = []

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            first, headers, body = await read_request(reader)
            got.append((first, headers, body))
            if first.startswith("HEAD"):  # the length of what GET would send, no body
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                writer.write(ok(b"stored " + body))
            await writer.drain()

    async with scripted_origin(origin) as (port, seen), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(f"HEAD http://127.0.0.1:{port}/h HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first, headers = await read_head(reader)
        assert first.startswith("HTTP/1.1 200") and headers["content-length"] == "1000"
        writer.write(f"PUT http://127.0.0.1:{port}/up HTTP/1.1\r\nHost: x\r\n"
                     "Expect: 100-continue\r\nContent-Length: 4\r\n\r\n".encode())  # fmt: skip
        assert (await read_head(reader))[0] == "HTTP/1.1 100 Continue"
        writer.write(b"data")
        first, _, body = await read_response(reader)
        writer.close()
        events = await recorder.wait_events(2)
    assert body == b"stored data"
    assert "expect" not in got[1][1], "the sidecar answered the expectation itself"
    assert seen == ["conn"], "HEAD left the connection reusable"
    assert [(e["http"]["method"], e["http"]["bytes_in"]) for e in events] == [("HEAD", 0), ("PUT", 11)]  # fmt: skip


async def test_half_closed_client_still_gets_the_answer(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with scripted_origin(echo_path) as (port, _), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/hc HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        writer.write_eof()
        _, _, body = await read_response(reader)
        assert body == b"GET /hc HTTP/1.1|"
        assert await reader.read() == b"", "then the sidecar closes"
        [event] = await recorder.wait_events(1)
    assert event["error"] is None


async def test_stale_pooled_connection_is_retried_on_a_fresh_one(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        if len(seen) == 1:  # the first connection drops the next request unanswered
            await read_request(reader)
            return
        await echo_path(reader, writer)

    async with scripted_origin(origin) as (port, seen), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        for path in ("/1", "/2"):
            writer.write(f"GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await read_response(reader))[2] == b"first"
        writer.close()
        events = await recorder.wait_events(2)
    assert seen == ["conn", "conn"]
    assert [(e["http"]["status_code"], e["error"]) for e in events] == [(200, None), (200, None)]


async def test_broken_upstreams_give_502_with_the_reason(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, _, _ = await read_request(reader)
        if "/garbage" in first:
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        else:  # promises 1000 bytes, sends 10, hangs up
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        await writer.drain()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/garbage HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first, _, body = await read_response(reader)
        assert first.startswith("HTTP/1.1 502") and b"not HTTP/1.x" in body
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/short HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await read_head(reader))[0].startswith("HTTP/1.1 200")
        assert await reader.read() == b"0123456789", "cut short, then closed"
        events = await recorder.wait_events(2)
    assert [(e["http"]["status_code"], e["error"]) for e in events] == [
        (502, "upstream_bad_response"), (200, "upstream_closed")]  # fmt: skip
    assert "mid-response" in events[1]["payload_redacted"]["summary"]


async def test_client_leaving_mid_response_is_recorded(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    upstream_closed = asyncio.Event()

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            while True:  # a slow stream, until the sidecar hangs up on us
                writer.write(b"p" * 1000)
                await writer.drain()
                await asyncio.sleep(0.02)
        finally:
            upstream_closed.set()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/long HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await read_head(reader)
        writer.close()
        [event] = await recorder.wait_events(1)
        async with asyncio.timeout(5):
            await upstream_closed.wait()
    assert event["error"] == "client_closed"
    assert event["http"]["status_code"] == 200 and event["http"]["bytes_in"] % 1000 == 0


async def test_slow_reader_backpressure_bounds_what_the_sidecar_holds(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    size = 24 * 1024 * 1024
    block = b"z" * 65536

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        sock = socket.create_connection(sidecar.address)  # type: ignore[arg-type]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
        writer.write(f"GET http://127.0.0.1:{port}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await read_head(reader)
        received, peak = 0, 0
        while received < size:
            received += len(await reader.read(65536))
            if received % (1024 * 1024) < 65536:
                await asyncio.sleep(0.01)  # a slow reader
                held = sum(c.transport.get_write_buffer_size() for c in sidecar.proxy.conns
                           if c.transport is not None)  # fmt: skip
                peak = max(peak, held)
        writer.close()
        [event] = await recorder.wait_events(1)
    assert event["http"]["bytes_in"] == size
    assert peak <= 2 * 1024 * 1024, f"the sidecar queued {peak} bytes for a slow client"


async def test_tunnel_passes_half_closes_on(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # everything until the client's EOF
        writer.write(b"got %d bytes" % len(data))
        await writer.drain()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + b"early")
        assert (await read_head(reader))[0] == "HTTP/1.1 200 Connection Established"
        writer.write(b"x" * 100_000)
        writer.write_eof()
        assert await reader.read() == b"got 100005 bytes"
        [event] = await recorder.wait_events(1)
    assert (event["http"]["bytes_out"], event["http"]["bytes_in"]) == (100_005, 16)
    assert event["error"] is None


async def test_refused_requests_get_4xx_5xx_and_no_event(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar() as sidecar:
        reader, writer = await connect(sidecar)
        writer.write(b"GET http://127.0.0.1:9/ws HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")  # fmt: skip
        assert (await read_head(reader))[0] == "HTTP/1.1 501 Not Implemented"
        reader, writer = await connect(sidecar)
        writer.write(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        first, _, body = await read_response(reader)
        assert first == "HTTP/1.1 400 Bad Request" and b"too large" in body
        reader, writer = await connect(sidecar)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await read_head(reader))[0] == "HTTP/1.1 400 Bad Request"
        await asyncio.sleep(0.2)
    assert recorder.events == []


async def test_shutdown_mid_exchange_records_it(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    hold = asyncio.Event()

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await hold.wait()  # never answers while the sidecar stops

    async with scripted_origin(origin) as (port, _):
        async with make_sidecar(shutdown_timeout=1.0) as sidecar:
            reader, writer = await connect(sidecar)
            writer.write(f"GET http://127.0.0.1:{port}/stuck HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await asyncio.sleep(0.3)
        hold.set()
        assert await reader.read() == b"", "the client connection was cut"
    [event] = recorder.events
    assert event["error"] == "sidecar_shutdown"
    assert event["destination"]["path"] == "/stuck"


async def test_host_names_are_resolved_once_per_dns_cache_period(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest

    async def three_tunnels(sidecar: Sidecar, port: int) -> None:
        for _ in range(3):  # "localhost" may name ::1 first: the sidecar tries each address
            reader, writer = await connect(sidecar)
            writer.write(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await read_head(reader))[0] == "HTTP/1.1 200 Connection Established"
            writer.write(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(reader))[2] == b"GET /t HTTP/1.1|"
            writer.close()

    async with scripted_origin(echo_path) as (port, _):
        async with make_sidecar() as sidecar:
            await three_tunnels(sidecar, port)
            assert sidecar.proxy.resolver.lookups == 1
        async with make_sidecar(dns_cache_sec=0) as sidecar:
            await three_tunnels(sidecar, port)
            assert sidecar.proxy.resolver.lookups == 3
    events = await recorder.wait_events(6)
    assert {(e["destination"]["host"], e["http"]["status_code"]) for e in events} == {("localhost", 200)}  # fmt: skip


async def test_a_pooled_connection_reads_again_and_carries_nothing_over() -> None:
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with scripted_origin(never_reads) as (port, _):
        pool, key = UpstreamPool(), ("127.0.0.1", port)
        upstream = UpstreamConn(pool, key)
        transport = await connect_upstream("127.0.0.1", port, upstream, Resolver(0))
        upstream.pause_reading(True)  # as when a slow client held the last answer back
        pool.put(upstream)
        assert pool.take(key) is upstream
        assert not upstream.reading_paused and transport.is_reading()
        transport.write(b"x" * (16 * 1024 * 1024))  # the origin reads none of it
        pool.put(upstream)
        assert pool.take(key) is None and upstream.closed, "unsent bytes: not reusable"


async def test_a_stalled_request_body_is_cut_and_recorded(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with (
        scripted_origin(echo_path) as (port, _),
        make_sidecar(client_idle_timeout=0.3) as sidecar,
    ):
        reader, writer = await connect(sidecar)
        writer.write(f"POST http://127.0.0.1:{port}/stall HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 100\r\n\r\n0123456789".encode())  # fmt: skip
        async with asyncio.timeout(5):
            assert await reader.read() == b"", "the sidecar hangs up"
        [event] = await recorder.wait_events(1)
    assert event["error"] == "client_timeout"
    assert event["http"]["bytes_out"] == 10
    assert event["payload_redacted"]["body_redacted_preview"] == "0123456789"


async def test_tunnel_whose_upstream_closes_first_then_the_client(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    """The order of every ``Connection: close`` answer: the upstream's EOF reaches the
    client as a half-close, then the client's EOF closes both sides. (Passing that
    second EOF on with ``write_eof`` to a peer that already sent its own aborts the
    process in uvloop 0.23 with "double free or corruption"; the tunnel closes instead.)"""
    recorder, _ = ingest

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        for _ in range(50):
            reader, writer = await connect(sidecar)
            writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await read_head(reader))[0] == "HTTP/1.1 200 Connection Established"
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).endswith(b"\r\n\r\nok")  # then the half-close
            writer.write_eof()
            writer.close()
        events = await recorder.wait_events(50)
    assert len(events) == 50
    assert all(e["error"] is None and e["http"]["bytes_in"] > 0 for e in events)


async def test_every_way_a_connect_head_arrives_gives_the_same_tunnel(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    """Plain heads take the parser's fast path; a head in pieces, one with a framing
    header, and one after a keep-alive request on the same connection go through
    llhttp or the fast path after it. Each tunnels and records alike."""
    recorder, _ = ingest

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readline()
        if first.startswith(b"GET "):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"plain"))
            await writer.drain()
            await reader.read()
            return
        writer.write(first.upper())  # a tunnel: echo its first line, upper-cased
        await writer.drain()

    async with scripted_origin(origin) as (port, _), make_sidecar() as sidecar:
        head = f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()

        async def tunnel(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *parts: bytes
        ) -> bool:
            """Tunnel through; did llhttp read this connection's head?"""
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.02)
            assert (await read_head(reader))[0] == "HTTP/1.1 200 Connection Established"
            writer.write(b"hello tunnel\n")
            assert await reader.readline() == b"HELLO TUNNEL\n"
            me = writer.get_extra_info("sockname")
            [conn] = [c for c in sidecar.proxy.conns
                      if c.transport and c.transport.get_extra_info("peername") == me]  # fmt: skip
            writer.close()
            return conn.parser is not None

        assert not await tunnel(*await connect(sidecar), head + b"\r\n")
        assert await tunnel(*await connect(sidecar), head[:20], head[20:] + b"\r\n")
        assert await tunnel(*await connect(sidecar), head + b"Content-Length: 0\r\n\r\n")
        reader, writer = await connect(sidecar)
        writer.write(f"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await read_response(reader))[2] == b"plain"
        assert await tunnel(reader, writer, head + b"\r\n")  # (its parser read the GET)
        events = await recorder.wait_events(5)
    tunnels = [e for e in events if e["http"]["method"] == "CONNECT"]
    assert len(tunnels) == 4
    for event in tunnels:
        assert event["destination"]["host"] == "127.0.0.1"
        assert event["destination"]["port"] == port
        assert (event["http"]["status_code"], event["http"]["bytes_out"]) == (200, 13)
        assert event["payload_redacted"]["headers_redacted"]["request"][0] == [
            "Host",
            f"127.0.0.1:{port}",
        ]
