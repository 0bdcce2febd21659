"""Sidecar benchmark: the same fast local upstream, direct vs through a real
``cogumi sidecar`` process, in one run. Prints JSON.

Figures: req/s and p50/p99 latency for a 1 KiB GET at concurrency 1 and 32;
MB/s of a 10 MiB download through a CONNECT tunnel; new CONNECT tunnels per
second; sidecar CPU seconds per 1,000 requests and peak RSS under c=32; each
with its ratio to direct and the target it is held to.

Usage: python bench/sidecar_bench.py [--quick] [--seconds N]

The upstream (and a small ingest API that accepts every batch) run in a child
process; the load generator is a minimal keep-alive HTTP/1.1 client on raw
asyncio streams so that the client is not the bottleneck being measured.
The CONNECT download is cleartext HTTP inside the tunnel: the sidecar never
decrypts TLS, so TLS would only add the same cost to both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

ONE_KIB = b"x" * 1024
TEN_MIB = 10 * 1024 * 1024
BLOCK = b"y" * (256 * 1024)
TARGETS = {"get_c1": 0.25, "get_c32": 0.25, "connect_download": 0.66, "new_tunnels": 0.6}
RSS_TARGET_MB = 50


# --- upstream (child process) -------------------------------------------------------------


class Upstream(asyncio.Protocol):
    """A deliberately fast HTTP/1.1 origin: /1k, /10m, and POST ingest endpoints."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.respond(head.split(" ", 2)[1], "connection: close" in head.lower())

    def respond(self, target: str, close: bool) -> None:
        t = self.transport
        conn = b"close" if close else b"keep-alive"
        if target.endswith("/10m"):
            t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (TEN_MIB, conn))  # type: ignore[attr-defined]  # fmt: skip
            for _ in range(TEN_MIB // len(BLOCK)):
                t.write(BLOCK)  # type: ignore[attr-defined]
        elif "/api/" in target:
            body = b'{"ok": true, "accepted": 0, "dropped": 0}'
            t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # type: ignore[attr-defined]  # fmt: skip
        else:
            t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nConnection: %s\r\n\r\n%s" % (conn, ONE_KIB))  # type: ignore[attr-defined]  # fmt: skip
        if close:
            t.close()


async def serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- load client ---------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    remaining = length
    while remaining:
        data = await reader.read(min(remaining, 1 << 20))
        if not data:
            raise ConnectionError("short body")
        remaining -= len(data)
    return length


async def get_loop(
    host_port: tuple[str, int], request: bytes, until: float, lat: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(*host_port, limit=1 << 20)
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(request)
            await read_response(reader)
            lat.append(time.perf_counter() - start)
    finally:
        writer.close()


async def get_phase(target: tuple[str, int], request: bytes, concurrency: int, seconds: float) -> dict[str, float]:  # fmt: skip
    lat: list[float] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(get_loop(target, request, until, lat) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "requests": len(lat),
        "req_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
    }


async def open_tunnel(proxy: tuple[str, int], upstream: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    reader, writer = await asyncio.open_connection(*proxy, limit=1 << 20)
    writer.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (upstream[1], upstream[1]))  # fmt: skip
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise ConnectionError(head[:80].decode())
    return reader, writer


async def download(upstream: tuple[str, int], proxy: tuple[str, int] | None, rounds: int) -> float:
    best = []
    for _ in range(rounds):
        start = time.perf_counter()
        if proxy:
            reader, writer = await open_tunnel(proxy, upstream)
        else:
            reader, writer = await asyncio.open_connection(*upstream, limit=1 << 20)
        writer.write(b"GET /10m HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        size = await read_response(reader)
        best.append(size / (time.perf_counter() - start) / 1e6)
        writer.close()
    return round(statistics.median(best), 1)


async def new_connections(upstream: tuple[str, int], proxy: tuple[str, int] | None, seconds: float, concurrency: int = 8) -> float:  # fmt: skip
    count = 0
    request = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

    async def worker(until: float) -> None:
        nonlocal count
        while time.perf_counter() < until:
            if proxy:
                reader, writer = await open_tunnel(proxy, upstream)
            else:
                reader, writer = await asyncio.open_connection(*upstream)
            writer.write(request)
            await read_response(reader)
            writer.close()
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds) for _ in range(concurrency)))
    return round(count / (time.perf_counter() - start), 1)


# --- process accounting ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def sample_rss(pid: int, stop: asyncio.Event) -> float:
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.05)
    return peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int) -> None:
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# --- the run -----------------------------------------------------------------------------------


def start_processes() -> tuple[int, int, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """The upstream (+ ingest) child and a real ``cogumi sidecar`` process."""
    up_port, proxy_port = free_port(), free_port()
    up_proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(up_port)])
    cogumi = str(Path(sys.executable).parent / "cogumi")
    env = {**os.environ, "SIDECAR_TOKEN": "cgs_bench", "PROJECT_ID": "bench",
           "INGEST_URL": f"http://127.0.0.1:{up_port}"}  # fmt: skip
    sc_proc = subprocess.Popen(
        [cogumi, "sidecar", "--listen", f"127.0.0.1:{proxy_port}", "--log-level", "error"], env=env
    )
    return up_port, proxy_port, up_proc, sc_proc


async def run(seconds: float, rounds: int, up_port: int, proxy_port: int, sc_pid: int) -> dict[str, object]:  # fmt: skip
    upstream = ("127.0.0.1", up_port)
    proxy = ("127.0.0.1", proxy_port)
    await wait_port(up_port)
    await wait_port(proxy_port)
    direct_req = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    proxied_req = b"GET http://127.0.0.1:%d/1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % up_port
    await get_phase(proxy, proxied_req, 4, min(1.0, seconds))  # warm-up
    results: dict[str, object] = {}
    for c in (1, 32):
        direct = await get_phase(upstream, direct_req, c, seconds)
        if c == 32:
            cpu0, stop = cpu_seconds(sc_pid), asyncio.Event()
            sampler = asyncio.ensure_future(sample_rss(sc_pid, stop))
        via = await get_phase(proxy, proxied_req, c, seconds)
        if c == 32:
            cpu = cpu_seconds(sc_pid) - cpu0
            stop.set()
            results["sidecar_cpu_sec_per_1000_requests"] = round(cpu / via["requests"] * 1000, 3)
            results["sidecar_rss_mb_c32"] = round(await sampler, 1)
        results[f"get_1kib_c{c}"] = {
            "direct": direct, "sidecar": via,
            "ratio": round(via["req_per_s"] / direct["req_per_s"], 3),
        }  # fmt: skip
    d_direct, d_via = (
        await download(upstream, None, rounds),
        await download(upstream, proxy, rounds),
    )
    results["connect_download_10mib_mb_per_s"] = {
        "direct": d_direct, "sidecar": d_via, "ratio": round(d_via / d_direct, 3)}  # fmt: skip
    n_direct = await new_connections(upstream, None, seconds)
    n_via = await new_connections(upstream, proxy, seconds)
    results["new_connections_per_s"] = {
        "direct": n_direct, "sidecar_connect_tunnels": n_via, "ratio": round(n_via / n_direct, 3)}  # fmt: skip
    results["targets"] = {
        "get_c1": results["get_1kib_c1"]["ratio"] >= TARGETS["get_c1"],  # type: ignore[index]
        "get_c32": results["get_1kib_c32"]["ratio"] >= TARGETS["get_c32"],  # type: ignore[index]
        "connect_download": d_via / d_direct >= TARGETS["connect_download"],
        "new_tunnels": n_via / n_direct >= TARGETS["new_tunnels"],
        "rss": results["sidecar_rss_mb_c32"] <= RSS_TARGET_MB,  # type: ignore[operator]
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (about 15 s in all)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each timed phase")
    parser.add_argument("--serve-upstream", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    if args.serve_upstream is not None:
        runner(serve_upstream(args.serve_upstream))
        return
    seconds = args.seconds or (1.5 if args.quick else 5.0)
    rounds = 3 if args.quick else 7
    report: dict[str, object] = {
        "bench": "sidecar",
        "command": "python bench/sidecar_bench.py" + (" --quick" if args.quick else ""),
        "cpus": os.cpu_count(),
        "phase_seconds": seconds,
        "targets": {**TARGETS, "rss_mb": RSS_TARGET_MB},
    }
    up_port, proxy_port, up_proc, sc_proc = start_processes()
    try:
        report["results"] = runner(run(seconds, rounds, up_port, proxy_port, sc_proc.pid))
    finally:
        sc_proc.send_signal(signal.SIGTERM)
        up_proc.terminate()
        sc_proc.wait(timeout=20)
        up_proc.wait(timeout=5)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
