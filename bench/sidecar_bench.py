"""Sidecar benchmark: the same fast local upstream, direct vs through a real
``cogumi sidecar`` process, in one run. Prints JSON.

Figures: req/s and p50/p99 latency for a 1 KiB GET over keep-alive at
concurrency 1 and 32; MB/s of a 10 MiB download through a CONNECT tunnel; new
CONNECT tunnels per second (a fresh tunnel per request vs a fresh direct
connection); sidecar CPU seconds per 1,000 requests and its memory under
c=32; each with its ratio to direct and the target it is held to.

Usage: python bench/sidecar_bench.py [--quick] [--seconds N] [--rounds N]
[--record-all] [--sidecar-arg=--flag ...] [--processes N] [--mitmdump PATH]
[--bare-relay] [--native-relay] [--figure NAME ...]

``--mitmdump PATH`` adds mitmproxy as a third side of every round, in regular
mode with TLS passthrough (``--ignore-hosts '.*'``: CONNECT tunnels are not
decrypted, as with the sidecar), reported as ``mitmproxy_per_s`` and
``mitmproxy_ratio`` beside the sidecar's. mitmproxy is not a dependency of
the product: install it into a venv of its own
(``python -m venv /opt/mitm-venv && /opt/mitm-venv/bin/pip install mitmproxy``)
and pass ``/opt/mitm-venv/bin/mitmdump``.

``--bare-relay`` adds, to the two CONNECT figures, the leanest tunnel relay this
runtime allows (uvloop protocols splicing two transports: no policy, no
record, no timeouts, no error answers), reported as ``bare_relay_per_s`` and
``bare_relay_ratio``: the floor a Python proxy cannot go under on the machine,
against which the sidecar's own overhead is measured.

``--native-relay`` adds, to the same two figures, the leanest native tunnel
relay: ``bench/native_relay.c`` (plain C, one thread, one epoll loop, the same
lack of policy, record and timeouts), compiled with ``cc -O2`` into a temporary
directory at start, reported as ``native_relay_per_s`` and
``native_relay_ratio``: the floor for a tunnel path in native code, which says
whether native code on the tunnel path could reach the target at all.

``sidecar_cpu_ms_per_op`` is the sidecar's CPU per request, per tunnel or per
10 MiB download: the figure that depends least on how busy the machine is.

Each figure is measured in ``--rounds`` rounds of a direct phase and a
sidecar phase back to back (the order alternates), and the report gives the
medians and the median of the per-round ratios: a machine whose load drifts
during the run moves both sides of a round alike. Every phase also reports
the CPU share (cores) of the load client, the upstream and the sidecar, which
shows what the phase was bound by. ``load_average`` before and after says
whether the machine was busy with other work.

By default the sidecar runs with its defaults, so the ingest throttle (300
events/min) applies: past it, exchanges are counted and their events are not
built. ``--record-all`` lifts the throttle, so every exchange becomes an
event with detection and redaction run on its headers and bodies and is
shipped to the (local, accept-everything) ingest endpoint.

``--processes N`` is an experiment, not a product mode: N independent sidecar
processes on N ports with the client's connections spread over them, to see
what more than one event loop would buy (CPU and memory are summed over them).

The upstream (and a small ingest API that accepts every batch) run in a child
process; the load generator is a minimal HTTP/1.1 client on raw asyncio
streams. The CONNECT download is cleartext HTTP inside the tunnel: the sidecar
never decrypts TLS, so TLS would only add the same cost to both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

ONE_KIB = b"x" * 1024
TEN_MIB = 10 * 1024 * 1024
BLOCK = b"y" * (256 * 1024)
CONNECT_FIGURES = ("connect_download", "new_tunnels")
CONNECT_ONLY = ("bare_relay", "native_relay")  # reference relays, measured in CONNECT_FIGURES
TARGETS = {"get_c1": 0.25, "get_c32": 0.25, "connect_download": 0.66, "new_tunnels": 0.6}
RSS_TARGET_MB = 50
IO_TIMEOUT = 30.0  # no single read or connect may hang the bench

Phase = Callable[[], Awaitable[dict[str, float]]]


# --- upstream (child process) -------------------------------------------------------------


class Upstream(asyncio.Protocol):
    """A deliberately fast HTTP/1.1 origin: /1k, /10m, and POST ingest endpoints."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
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


class BareClient(asyncio.Protocol):
    """One client of the bare relay: CONNECT host:port, then bytes both ways."""

    def __init__(self) -> None:
        self.buffer = b""
        self.up: BareUpstream | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.up is not None:
            self.up.transport.write(data)
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0:
            host, _, port = self.buffer.split(b" ", 2)[1].rpartition(b":")
            rest, self.buffer = self.buffer[end + 4 :], b""
            self.opening = asyncio.ensure_future(self.open(host.decode(), int(port), rest))

    async def open(self, host: str, port: int, rest: bytes) -> None:
        up = BareUpstream(self)
        await asyncio.get_running_loop().create_connection(lambda: up, host, port)
        self.up = up
        self.transport.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if rest:
            up.transport.write(rest)

    def eof_received(self) -> bool:
        self.eof = True
        if self.up is None or self.up.eof:  # both sides are done (no write_eof after an EOF)
            if self.up is not None:
                self.up.transport.close()
            return False
        self.up.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.transport.close()


class BareUpstream(asyncio.Protocol):
    def __init__(self, client: BareClient) -> None:
        self.client = client
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.client.eof:
            self.client.transport.close()
            return False
        self.client.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


async def serve_bare_relay(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BareClient, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


async def serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- load client ---------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    remaining = length
    while remaining:
        data = await asyncio.wait_for(reader.read(min(remaining, 1 << 20)), IO_TIMEOUT)
        if not data:
            raise ConnectionError("short body")
        remaining -= len(data)
    return length


async def open_conn(host_port: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    return await asyncio.wait_for(asyncio.open_connection(*host_port, limit=1 << 20), IO_TIMEOUT)


async def get_loop(
    host_port: tuple[str, int], request: bytes, until: float, lat: list[float]
) -> None:
    reader, writer = await open_conn(host_port)
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(request)
            await read_response(reader)
            lat.append(time.perf_counter() - start)
    finally:
        writer.close()


async def get_phase(targets: list[tuple[str, int]], request: bytes, concurrency: int, seconds: float) -> dict[str, float]:  # fmt: skip
    """``concurrency`` keep-alive connections, spread over ``targets`` in turn."""
    lat: list[float] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(get_loop(targets[i % len(targets)], request, until, lat)
                           for i in range(concurrency)))  # fmt: skip
    elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "requests": len(lat),
        "per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
    }


async def open_tunnel(proxy: tuple[str, int], upstream: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    reader, writer = await open_conn(proxy)
    writer.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (upstream[1], upstream[1]))  # fmt: skip
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise ConnectionError(head[:80].decode())
    return reader, writer


async def download(upstream: tuple[str, int], proxy: tuple[str, int] | None, count: int) -> dict[str, float]:  # fmt: skip
    rates = []
    for _ in range(count):
        start = time.perf_counter()
        if proxy:
            reader, writer = await open_tunnel(proxy, upstream)
        else:
            reader, writer = await open_conn(upstream)
        writer.write(b"GET /10m HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        size = await read_response(reader)
        rates.append(size / (time.perf_counter() - start) / 1e6)
        writer.close()
    return {"requests": count, "per_s": round(statistics.median(rates), 1)}


async def new_connections(upstream: tuple[str, int], proxies: list[tuple[str, int]] | None, seconds: float, concurrency: int = 8) -> dict[str, float]:  # fmt: skip
    count = 0
    request = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

    async def worker(until: float, proxy: tuple[str, int] | None) -> None:
        nonlocal count
        while time.perf_counter() < until:
            if proxy:
                reader, writer = await open_tunnel(proxy, upstream)
            else:
                reader, writer = await open_conn(upstream)
            writer.write(request)
            await read_response(reader)
            writer.close()
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, proxies[i % len(proxies)] if proxies else None)
                           for i in range(concurrency)))  # fmt: skip
    return {"requests": count, "per_s": round(count / (time.perf_counter() - start), 1)}


# --- process accounting ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """The process and its children (worker processes, if any)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) summed over ``pids``, in MB; PSS splits shared pages fairly."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024


class Meter:
    """CPU used by the client (this process), the upstream and the proxy measured in a phase."""

    def __init__(self, upstream_pid: int, proxy_pids: dict[str, list[int]]) -> None:
        self.upstream_pid, self.proxy_pids = upstream_pid, proxy_pids

    def proxy_family(self, side: str) -> list[int]:
        return [p for pid in self.proxy_pids.get(side, []) for p in family(pid)]

    def _sample(self, side: str) -> tuple[float, float, float, float]:
        proxy = sum(cpu_seconds(p) for p in self.proxy_family(side))
        return time.perf_counter(), time.process_time(), cpu_seconds(self.upstream_pid), proxy

    async def measure(self, phase: Awaitable[dict[str, float]], side: str, sample_memory: bool = False) -> dict[str, Any]:  # fmt: skip
        before = self._sample(side)
        peak = [0.0, 0.0]
        stop = asyncio.Event()

        async def sampler() -> None:
            while not stop.is_set():
                rss, pss = memory_mb(self.proxy_family(side))
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                await asyncio.sleep(0.05)

        task = asyncio.ensure_future(sampler()) if sample_memory else None
        result: dict[str, Any] = dict(await phase)
        stop.set()
        if task is not None:
            await task
        after = self._sample(side)
        wall = after[0] - before[0]
        result["cpu_cores"] = {
            "client": round((after[1] - before[1]) / wall, 2),
            "upstream": round((after[2] - before[2]) / wall, 2),
            "proxy": round((after[3] - before[3]) / wall, 2),
        }
        result["proxy_cpu_sec"] = after[3] - before[3]
        if sample_memory:
            result["proxy_rss_mb"], result["proxy_pss_mb"] = round(peak[0], 1), round(peak[1], 1)
        return result


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


def start_processes(sidecar_args: list[str], count: int) -> tuple[int, subprocess.Popen[bytes], list[tuple[int, subprocess.Popen[bytes]]]]:  # fmt: skip
    """The upstream (+ ingest) child and ``count`` real ``cogumi sidecar`` processes."""
    up_port = free_port()
    up_proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(up_port)])
    cogumi = str(Path(sys.executable).parent / "cogumi")
    env = {**os.environ, "SIDECAR_TOKEN": "cgs_bench", "PROJECT_ID": "bench",
           "INGEST_URL": f"http://127.0.0.1:{up_port}"}  # fmt: skip
    sidecars = []
    for _ in range(count):
        port = free_port()
        proc = subprocess.Popen(
            [cogumi, "sidecar", "--listen", f"127.0.0.1:{port}", "--log-level", "error",
             *sidecar_args], env=env,
        )  # fmt: skip
        sidecars.append((port, proc))
    return up_port, up_proc, sidecars


def start_mitmdump(path: str) -> tuple[int, subprocess.Popen[bytes]]:
    """mitmproxy in regular mode, TLS passthrough for every host, no flow output."""
    port = free_port()
    proc = subprocess.Popen(
        [path, "--listen-host", "127.0.0.1", "--listen-port", str(port), "--mode", "regular",
         "--ignore-hosts", ".*", "--quiet", "--set", "flow_detail=0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return port, proc


def summarize(rounds: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    def median(side: str, key: str) -> float:
        return round(float(statistics.median(r[side][key] for r in rounds)), 3)

    ratios = [r["sidecar"]["per_s"] / r["direct"]["per_s"] for r in rounds]
    summary: dict[str, Any] = {
        "direct_per_s": median("direct", "per_s"),
        "sidecar_per_s": median("sidecar", "per_s"),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
    }
    proxies = [side for side in ("sidecar", "mitmproxy", *CONNECT_ONLY) if side in rounds[0]]
    for other in proxies[1:]:
        summary[f"{other}_per_s"] = median(other, "per_s")
        ratio = [r[other]["per_s"] / r["direct"]["per_s"] for r in rounds]
        summary[f"{other}_ratio"] = round(statistics.median(ratio), 3)
    if "p50_ms" in rounds[0]["direct"]:
        for side in ("direct", *proxies):
            summary[f"{side}_p50_ms"] = median(side, "p50_ms")
            summary[f"{side}_p99_ms"] = median(side, "p99_ms")
    for side in proxies:
        per_op = [r[side]["proxy_cpu_sec"] / max(1, r[side]["requests"]) * 1000 for r in rounds]
        summary[f"{side}_cpu_ms_per_op"] = round(statistics.median(per_op), 4)
    if target is not None:
        summary["target"], summary["met"] = target, summary["ratio"] >= target
    summary["rounds"] = rounds
    return summary


async def run(args: argparse.Namespace, up_port: int, proxy_ports: dict[str, list[int]], meter: Meter) -> dict[str, Any]:  # fmt: skip
    """Each figure in rounds; every round measures direct and each proxy, in rotating order."""
    upstream = ("127.0.0.1", up_port)
    await wait_port(up_port)
    for port in (p for ports in proxy_ports.values() for p in ports):
        await wait_port(port)
    direct_req = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    proxied_req = b"GET http://127.0.0.1:%d/1k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % up_port
    secs = args.seconds

    def sides(name: str) -> dict[str, Phase]:
        """The phase ``name`` for direct and for each proxy under test."""
        out: dict[str, Phase] = {}
        for side in ("direct", *proxy_ports):
            if side in CONNECT_ONLY and name not in CONNECT_FIGURES:
                continue
            via = [("127.0.0.1", port) for port in proxy_ports.get(side, [])]
            if name == "get_c1":
                out[side] = lambda v=via: get_phase(v or [upstream], proxied_req if v else direct_req, 1, secs)  # type: ignore[misc]  # fmt: skip
            elif name == "get_c32":
                out[side] = lambda v=via: get_phase(v or [upstream], proxied_req if v else direct_req, 32, secs)  # type: ignore[misc]  # fmt: skip
            elif name == "connect_download":
                out[side] = lambda v=via: download(upstream, v[0] if v else None, 3)  # type: ignore[misc]
            else:
                out[side] = lambda v=via: new_connections(upstream, v or None, secs)  # type: ignore[misc]
        return out

    for side, ports in proxy_ports.items():  # warm-up
        if side in CONNECT_ONLY:
            continue
        await get_phase([("127.0.0.1", p) for p in ports], proxied_req, 4, min(1.0, secs))
    names = ["get_c1", "get_c32"] if args.record_all else list(TARGETS)
    names = [name for name in names if not args.figure or name in args.figure]
    results: dict[str, Any] = {}
    for name in names:
        phases = sides(name)
        order = list(phases)
        rounds = []
        for index in range(args.rounds):
            one: dict[str, Any] = {}
            for side in order[index % len(order) :] + order[: index % len(order)]:
                memory = side != "direct" and name == "get_c32"
                one[side] = await meter.measure(phases[side](), side, sample_memory=memory)
            rounds.append(one)
        results[name] = summarize(rounds, None if args.record_all else TARGETS[name])
    if "get_c32" not in results:
        return results
    for side in (p for p in proxy_ports if p not in CONNECT_ONLY):  # not in the GET figures
        c32 = [r[side] for r in results["get_c32"]["rounds"]]
        results[f"{side}_cpu_sec_per_1000_requests_c32"] = round(
            sum(r["proxy_cpu_sec"] for r in c32) / sum(r["requests"] for r in c32) * 1000, 3
        )
        results[f"{side}_memory_c32"] = {
            "peak_rss_mb": max(r["proxy_rss_mb"] for r in c32),
            "peak_pss_mb": max(r["proxy_pss_mb"] for r in c32),
        }
    results["sidecar_memory_c32"] |= {
        "target_mb": RSS_TARGET_MB,
        "met": results["sidecar_memory_c32"]["peak_rss_mb"] <= RSS_TARGET_MB,
    }
    return results


def build_native_relay() -> Path:
    """Compile bench/native_relay.c with ``cc -O2`` into a temporary directory."""
    cc = shutil.which("cc")
    if cc is None:
        sys.exit("--native-relay needs a C compiler: no `cc` on PATH")
    source = Path(__file__).with_name("native_relay.c")
    binary = Path(tempfile.mkdtemp(prefix="native_relay_")) / "native_relay"
    built = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", str(binary), str(source)],
                           capture_output=True, text=True)  # fmt: skip
    if built.returncode != 0:
        shutil.rmtree(binary.parent)
        sys.exit(f"--native-relay: compiling {source} failed:\n{built.stderr}")
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases, 3 rounds")
    parser.add_argument("--seconds", type=float, default=None, help="length of each timed phase")
    parser.add_argument("--rounds", type=int, default=None, help="direct/sidecar pairs per figure")
    parser.add_argument("--record-all", action="store_true",
                        help="lift the throttle: every exchange becomes an event (GET phases only)")  # fmt: skip
    parser.add_argument("--sidecar-arg", action="append", default=[],
                        help="extra argument for `cogumi sidecar` (repeatable)")  # fmt: skip
    parser.add_argument("--processes", type=int, default=1,
                        help="experiment: N independent sidecar processes, the load spread over "
                        "them (each with its own shipper and throttle; not a product mode)")  # fmt: skip
    parser.add_argument("--mitmdump", help="path of a mitmdump binary: measure mitmproxy too")
    parser.add_argument("--figure", action="append", choices=list(TARGETS),
                        help="measure only this figure (repeatable; memory comes with get_c32)")  # fmt: skip
    parser.add_argument("--bare-relay", action="store_true",
                        help="measure the leanest uvloop tunnel relay too (CONNECT figures)")  # fmt: skip
    parser.add_argument("--native-relay", action="store_true",
                        help="measure the leanest native (C, epoll) tunnel relay too, built from "
                        "bench/native_relay.c with cc (CONNECT figures)")  # fmt: skip
    parser.add_argument("--serve-upstream", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-relay", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    if args.serve_upstream is not None:
        runner(serve_upstream(args.serve_upstream))
        return
    if args.serve_bare_relay is not None:
        runner(serve_bare_relay(args.serve_bare_relay))
        return
    args.seconds = args.seconds or (1.0 if args.quick else 2.0)
    args.rounds = args.rounds or (3 if args.quick else 5)
    sidecar_args = list(args.sidecar_arg)
    if args.record_all:
        sidecar_args += ["--throttle-per-window", "1000000000"]
    report: dict[str, Any] = {
        "bench": "sidecar",
        "command": " ".join(["python", "bench/sidecar_bench.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "phase_seconds": args.seconds,
        "rounds": args.rounds,
        "mode": "record_all" if args.record_all else "default_throttle",
        "sidecar_processes": args.processes,
        "load_average_before": os.getloadavg(),
    }
    native = build_native_relay() if args.native_relay else None  # before any process starts
    up_port, up_proc, sidecars = start_processes(sidecar_args, args.processes)
    mitm = start_mitmdump(args.mitmdump) if args.mitmdump else None
    relays: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    if args.bare_relay:
        bare_port = free_port()
        relays["bare_relay"] = bare_port, subprocess.Popen([sys.executable, __file__, "--serve-bare-relay", str(bare_port)])  # fmt: skip
    if native is not None:
        native_port = free_port()
        relays["native_relay"] = native_port, subprocess.Popen([str(native), str(native_port)])
    try:
        ports = {"sidecar": [port for port, _ in sidecars]}
        pids = {"sidecar": [proc.pid for _, proc in sidecars]}
        if mitm is not None:
            ports["mitmproxy"], pids["mitmproxy"] = [mitm[0]], [mitm[1].pid]
            version = subprocess.run([args.mitmdump, "--version"], capture_output=True, text=True)
            report["mitmproxy_version"] = version.stdout.split("\n", 1)[0]
        for side, (port, proc) in relays.items():
            ports[side], pids[side] = [port], [proc.pid]
        report["results"] = runner(run(args, up_port, ports, Meter(up_proc.pid, pids)))
    finally:
        for _, proc in sidecars:
            proc.send_signal(signal.SIGTERM)
        if mitm is not None:
            mitm[1].terminate()
        for _, proc in relays.values():
            proc.terminate()
        up_proc.terminate()
        for _, proc in sidecars:
            proc.wait(timeout=20)
        if mitm is not None:
            mitm[1].wait(timeout=20)
        for _, proc in relays.values():
            proc.wait(timeout=5)
        up_proc.wait(timeout=5)
        if native is not None:
            shutil.rmtree(native.parent, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()
    results = report["results"]
    report["summary"] = {
        name: {k: results[name][k] for k in ("ratio", "target", "met", "mitmproxy_ratio", "bare_relay_ratio", "native_relay_ratio")
               if k in results[name]}
        for name in ("get_c1", "get_c32", "connect_download", "new_tunnels") if name in results
    } | ({"memory": results["sidecar_memory_c32"]} if "sidecar_memory_c32" in results else {})  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
