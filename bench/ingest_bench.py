"""Ingest benchmark: events/s end to end through the HTTP API, against a raw
bulk insert of the same rows into the same database, in one run. Prints JSON.

For each store (PostgreSQL, SQLite) and each ``serve --workers`` value, a
fresh database gets a real ``cogumi serve`` (throttle and events-per-run cap
lifted, so every event gets its seq); 8 concurrent
senders post pre-encoded batches of 200 sidecar-shaped events into a
running campaign (so every batch also claims its ``batch_id`` and reserves its
``seq`` range). The baseline writes the very values the server hands its
driver (same preparation code), with asyncpg ``COPY`` (PostgreSQL) or stdlib
``sqlite3.executemany`` (SQLite), and the ratio says how much of the raw write
speed survives HTTP, validation, payload bounds, hashing and transactions.
``server_cpu_ms_per_1k_events`` (all serve processes) depends less on how busy
the machine is than the rates do; on PostgreSQL,
``database_cpu_ms_per_1k_events`` gives the database server's own CPU (every
``postgres`` process on the machine) during the API run and during the raw
write. Bodies are encoded as the sidecar encodes them (compact JSON, one
``instance_id`` per sender's project) and sent as the sidecar sends them, with its
own client (:mod:`cogumi.sidecar.apiclient`, a new connection per batch): on a
2-CPU machine a heavier client takes CPU from the server it measures.
``client_cpu_ms_per_1k_events`` says how much the senders took.

Usage: python bench/ingest_bench.py [--events N] [--stores postgresql,sqlite]
[--workers 1,2] [--runs N] [--repeat N] [--client sidecar|httpx]
[--sender-version V].

``--sender-version`` (default: this package's version, as a current sidecar
sends) names the batches' ``sidecar_version``. Any other value makes the
server scan every event for secrets the sender left in the clear
(``events/guard.py``), which is what an older sidecar or a client of the
customer's own costs.

``--repeat N`` measures each configuration N times, each on a fresh database
with its own raw baseline right after, and reports every repetition plus the
medians (rates, CPU, and the median of the per-repetition ratios). On a small
shared machine the raw baseline alone moves by a third from one measurement to
the next, so a single ratio says little; quote the medians.

``--runs N`` (default 1) spreads the senders over N projects of one org, each
with its own sidecar token and running campaign, as N sidecars beside N agents
would be: with 1 (the default) all 8 senders write into one run, whose row
lock orders their ``seq`` reservations, the worst case. PostgreSQL: the server at COGUMI_BENCH_PG_ADMIN_URL
(default postgresql://postgres@127.0.0.1:5432/postgres); a scratch database
is created and dropped per measurement. ``--workers`` above 1 uses Redis at
COGUMI_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.sqlite import aiosqlite as aiosqlite_dialect

from cogumi import __version__
from cogumi.app import create_app  # noqa: F401 - loads every model (foreign key types)
from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.db.migrate import upgrade
from cogumi.events.ingest import COLUMNS, SQLITE_INSERT, prepare
from cogumi.events.schemas import IngestBatchIn
from cogumi.projects.models import Project, SidecarToken
from cogumi.runs.models import Run, RunStatus
from cogumi.sidecar.apiclient import ApiClient
from cogumi.tenancy import security
from cogumi.tenancy.models import Organization

PG_ADMIN = os.environ.get(
    "COGUMI_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
COGUMI = str(Path(sys.executable).parent / "cogumi")
REDIS = os.environ.get("COGUMI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BATCH, SENDERS = 200, 8
CLIENT = "sidecar"  # --client
SENDER_VERSION = __version__  # --sender-version
TARGET_RATIO = 0.5


def sample_event(n: int) -> dict[str, Any]:
    """What a sidecar sends for one tool call: redacted headers, a short body preview."""
    payload = {
        "summary": f"POST tools.example.com/v1/items/{n} -> 201",
        "headers_redacted": {
            "request": [["Host", "tools.example.com"], ["Content-Type", "application/json"],
                        ["Authorization", "Bearer [REDACTED:OPENAI_KEY:sk-…d9]"]],
            "response": [["Content-Type", "application/json"], ["Content-Length", "48"]],
        },
        "body_redacted_preview": json.dumps({"item": n, "note": "x" * 160}),
        "response_body_redacted_preview": '{"ok": true, "id": "it_0123456789"}',
    }  # fmt: skip
    return {
        "schema_version": 1,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "channel": "http",
        "type": "request",
        "actor": "target",
        "destination": {"host": "tools.example.com", "path": f"/v1/items/{n}", "port": 443,
                        "classification": "tool", "sensitive_path": None},
        "http": {"method": "POST", "status_code": 201, "bytes_out": 190, "bytes_in": 48,
                 "duration_ms": 12.5},
        "payload_redacted": payload,
        "matches": [{"kind": "OPENAI_KEY", "hash": "a" * 64, "preview": "sk-…d9",
                     "confidence": 0.95}],
        "error": None,
        "integrity_hash": "b" * 64,
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(
    url: str, org_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, uuid.UUID]:
    """An org (or the given one), a project with a sidecar token, a running campaign."""
    engine = make_engine(url)
    issued = security.issue_prefixed_token("cgs")
    project_id, token_id, run_id = (uuid.uuid4() for _ in range(3))
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            if org_id is None:
                org_id = uuid.uuid4()
                session.add(Organization(id=org_id, name="bench"))
                await session.flush()
            session.add(Project(id=project_id, org_id=org_id, name=f"bench-{project_id.hex[:8]}"))
            await session.flush()
            session.add(
                SidecarToken(
                    id=token_id,
                    org_id=org_id,
                    project_id=project_id,
                    prefix=issued.prefix,
                    token_hash=issued.hash,
                )
            )
            session.add(Run(id=run_id, org_id=org_id, project_id=project_id,
                            status=RunStatus.running, started_at=datetime.now(UTC)))  # fmt: skip
    finally:
        await engine.dispose()
    return org_id, project_id, token_id, issued.plaintext, run_id


def encoded_batches(project_id: uuid.UUID, total: int) -> list[bytes]:
    """Request bodies, encoded before the clock starts (as a sidecar has them ready):
    on a 2-CPU machine the client's own JSON encoding would compete with the server.
    Encoded as the sidecar encodes them (compact separators, one instance id)."""
    instance = uuid.uuid4().hex
    return [
        json.dumps({"project_id": str(project_id), "batch_id": uuid.uuid4().hex,
                    "sidecar_version": SENDER_VERSION, "instance_id": instance,
                    "events": [sample_event(i * BATCH + j) for j in range(BATCH)]},
                   separators=(",", ":")).encode()
        for i in range(total // BATCH)
    ]  # fmt: skip


async def send_all(
    base: str, targets: list[tuple[uuid.UUID, str]], total: int
) -> tuple[float, float]:
    """``total`` events from 8 senders, sender i posting as ``targets[i % len(targets)]``
    (project, token), each target's batches in a queue of its own."""
    share = total // len(targets)
    queues: list[asyncio.Queue[bytes]] = []
    for project_id, _ in targets:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in encoded_batches(project_id, share):
            queue.put_nowait(body)
        queues.append(queue)

    url = f"{base}/api/ingest/events"

    async def sender(api: ApiClient, token: str, queue: asyncio.Queue[bytes]) -> None:
        headers = {"X-Sidecar-Token": token}
        while not queue.empty():
            body = queue.get_nowait()
            response = await api.request("POST", url, headers=headers, content=body)
            assert response.status_code == 200, response.text

    async def httpx_sender(api: httpx.AsyncClient, token: str, queue: asyncio.Queue[bytes]) -> None:
        headers = {"X-Sidecar-Token": token, "Content-Type": "application/json"}
        while not queue.empty():
            body = queue.get_nowait()
            response = await api.post(url, headers=headers, content=body)
            assert response.status_code == 200, response.text

    for project_id, token in targets:
        headers = {"X-Sidecar-Token": token, "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=base, headers=headers, trust_env=False) as client:
            await sender_warmup(client, project_id)
    async with httpx.AsyncClient(timeout=60, trust_env=False) as pool:
        send = partial(httpx_sender, pool) if CLIENT == "httpx" else partial(sender, ApiClient(timeout_sec=60))  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(send(targets[i % len(targets)][1], queues[i % len(targets)])
                               for i in range(SENDERS)))  # fmt: skip
        return time.perf_counter() - started, time.process_time() - cpu


async def keep_sending(base: str, project_id: uuid.UUID, token: str, seconds: float) -> int:
    """Background load for other benchmarks: 8 senders post batches for ``seconds``;
    returns the events sent."""
    template = encoded_batches(project_id, BATCH)[0]
    marker = json.loads(template)["batch_id"].encode()
    deadline, sent = time.monotonic() + seconds, 0
    headers = {"X-Sidecar-Token": token, "Content-Type": "application/json"}

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < deadline:
            body = template.replace(marker, uuid.uuid4().hex.encode())
            response = await client.post("/api/ingest/events", content=body)
            assert response.status_code == 200, response.text
            sent += BATCH

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, trust_env=False) as c:
        await asyncio.gather(*(sender(c) for _ in range(SENDERS)))
    return sent


async def sender_warmup(client: httpx.AsyncClient, project_id: uuid.UUID) -> None:
    body = {
        "project_id": str(project_id),
        "batch_id": uuid.uuid4().hex,
        "events": [sample_event(0)],
    }
    assert (await client.post("/api/ingest/events", json=body)).status_code == 200


def stored_rows(
    store: str, org_id: uuid.UUID, project_id: uuid.UUID, token_id: uuid.UUID, n: int
) -> list[tuple[Any, ...]]:
    """The very values the server hands its driver for ``n`` events (same code path)."""
    token = SidecarToken(id=token_id, org_id=org_id, project_id=project_id)
    dialect = (asyncpg_dialect if store == "postgresql" else aiosqlite_dialect).dialect()
    rows: list[tuple[Any, ...]] = []
    for start in range(0, n, BATCH):
        events = [sample_event(i) for i in range(start, min(n, start + BATCH))]
        batch = IngestBatchIn.model_validate(
            {"project_id": project_id, "batch_id": "raw", "events": events}
        )
        prepared = prepare(batch, dialect=dialect, token=token, received_at=datetime.now(UTC))
        rows.extend(tuple(row) for row in prepared.rows)
    return rows


async def raw_postgres(dsn: str, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
    """Seconds the ``COPY`` took, and the database's CPU seconds meanwhile (read while
    the connection's backend still exists)."""
    conn = await asyncpg.connect(dsn)
    try:
        cpu_before, started = database_cpu_seconds("postgresql"), time.perf_counter()
        await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
        return time.perf_counter() - started, database_cpu_seconds("postgresql") - cpu_before
    finally:
        await conn.close()


def raw_sqlite(path: str, rows: list[tuple[Any, ...]]) -> float:
    sql = SQLITE_INSERT  # the server's statement for these rows
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        started = time.perf_counter()
        with conn:
            conn.executemany(sql, rows)
        return time.perf_counter() - started
    finally:
        conn.close()


async def measure(
    store: str, url: str, total: int, data_dir: Path, workers: int, runs: int = 1
) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, url)
    org_id, project_id, token_id, token, _ = await seed(url)
    targets = [(project_id, token)]
    for _ in range(runs - 1):
        _, other_project, _, other_token, _ = await seed(url, org_id)
        targets.append((other_project, other_token))
    total -= total % (BATCH * runs)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env |= {"COGUMI_DATABASE_URL": url, "COGUMI_DATA_DIR": str(data_dir), "COGUMI_PORT": str(port),
            "COGUMI_INGEST_RATE_LIMIT_PER_MIN": str(10**9), "COGUMI_LOG_LEVEL": "WARNING",
            "COGUMI_QUOTA_EVENTS_PER_RUN": str(10**9),
            "COGUMI_SERVE_WORKERS": str(workers)}  # fmt: skip
    if workers > 1:  # several processes share limits, bus and queue through Redis
        env |= {"COGUMI_REDIS_URL": REDIS, "COGUMI_REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex}:"}
    server_log = data_dir / f"serve-{store}-{workers}.log"
    with server_log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            COGUMI, "serve", env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_up(base, proc)
        cpu_before, db_before = tree_cpu_seconds(proc.pid), database_cpu_seconds(store)
        api_sec, client_cpu = await send_all(base, targets, total)
        server_cpu = tree_cpu_seconds(proc.pid) - cpu_before
        api_db_cpu = database_cpu_seconds(store) - db_before
    except Exception:
        sys.stderr.write(server_log.read_text(errors="replace")[-6000:])
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    rows = stored_rows(store, org_id, project_id, token_id, total)
    raw_db_cpu = 0.0
    if store == "postgresql":
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        raw_sec, raw_db_cpu = await raw_postgres(dsn, rows)
    else:
        raw_sec = await asyncio.to_thread(raw_sqlite, url.split(":///", 1)[1], rows)
    api_rate, raw_rate = total / api_sec, total / raw_sec
    database: dict[str, Any] = {}
    if store == "postgresql":  # SQLite writes inside the serve process (its CPU above)
        database["database_cpu_ms_per_1k_events"] = {
            "api": round(1e6 * api_db_cpu / total, 1),
            "raw": round(1e6 * raw_db_cpu / total, 1),
        }
    return {
        "events": total,
        "batch": BATCH,
        "senders": SENDERS,
        "runs": runs,
        "serve_workers": workers,
        "api_events_per_sec": round(api_rate),
        "server_cpu_ms_per_1k_events": round(1000 * server_cpu / total * 1000, 1),
        "client_cpu_ms_per_1k_events": round(1000 * client_cpu / total * 1000, 1),
        "raw_events_per_sec": round(raw_rate),
        **database,
        "raw_method": "asyncpg COPY" if store == "postgresql" else "sqlite3 executemany",
        "ratio_to_raw": round(api_rate / raw_rate, 3),
        "target_ratio": TARGET_RATIO,
    }


def _processes() -> dict[int, tuple[str, int, float]]:
    """Every process's (name, parent, CPU seconds so far), from Linux /proc.

    The CPU is its user and system time plus that of its children that have exited
    and been waited for: a PostgreSQL backend that closes mid-measurement (a pool's
    overflow connection) leaves its time in the postmaster's, instead of taking it
    out of the sum."""
    found: dict[int, tuple[str, int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, _, tail = (entry / "stat").read_text().rpartition(")")
        except OSError:
            continue
        fields = tail.split()
        found[int(entry.name)] = (
            head.partition("(")[2],
            int(fields[1]),
            sum(int(value) for value in fields[11:15]) / tick,  # utime stime cutime cstime
        )
    return found


def database_cpu_seconds(store: str) -> float:
    """CPU seconds so far of every PostgreSQL server process on this machine (its
    backends, those that have closed included, WAL writer, checkpointer,
    autovacuum); 0 for SQLite (in-process)."""
    if store != "postgresql":
        return 0.0
    return sum(cpu for name, _, cpu in _processes().values() if name == "postgres")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants so far (Linux /proc)."""
    found = _processes()
    parents = {p: parent for p, (_, parent, _) in found.items()}
    times = {p: cpu for p, (_, _, cpu) in found.items()}
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(p, 0.0) for p in tree)


async def wait_up(base: str, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(60), httpx.AsyncClient(trust_env=False) as probe:
        while True:
            if proc.returncode is not None:
                raise RuntimeError("cogumi serve exited")
            try:
                if (await probe.get(f"{base}/api/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def one_store(store: str, total: int, workers: int, tmp: Path, runs: int = 1) -> dict[str, Any]:  # fmt: skip
    """One measurement on a fresh database of ``store``."""
    data_dir = tmp / f"{store}-{workers}"
    data_dir.mkdir()
    if store == "sqlite":
        return await measure(store, f"sqlite+aiosqlite:///{data_dir}/bench.db", total, data_dir,
                             workers, runs)  # fmt: skip
    name = f"cogumi_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    try:
        return await measure(store, url, total, data_dir, workers, runs)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def medians(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of repeated measurements of one configuration, and each of them."""
    summary = dict(repeats[0])
    for key in ("api_events_per_sec", "raw_events_per_sec", "server_cpu_ms_per_1k_events",
                "ratio_to_raw"):  # fmt: skip
        summary[key] = statistics.median(r[key] for r in repeats)
    summary["ratio_min_max"] = [min(r["ratio_to_raw"] for r in repeats),
                                max(r["ratio_to_raw"] for r in repeats)]  # fmt: skip
    if "database_cpu_ms_per_1k_events" in summary:
        summary["database_cpu_ms_per_1k_events"] = {
            side: statistics.median(r["database_cpu_ms_per_1k_events"][side] for r in repeats)
            for side in ("api", "raw")
        }
    summary["repeats"] = [{k: r[k] for k in ("api_events_per_sec", "raw_events_per_sec",
                           "ratio_to_raw", "server_cpu_ms_per_1k_events")} for r in repeats]  # fmt: skip
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument(
        "--workers", default="1", help="`serve --workers` values to measure, e.g. 1,2 (>1: Redis)"
    )
    parser.add_argument("--runs", type=int, default=1, help="projects/runs the senders spread over")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per configuration")
    parser.add_argument(
        "--client", choices=("sidecar", "httpx"), default="sidecar",
        help="the senders' HTTP client: the sidecar's own (default) or httpx (keep-alive)",
    )  # fmt: skip
    parser.add_argument("--load-against", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sender-version", default=__version__,
        help="the batches' sidecar_version (another than the server's is scanned on ingest)",
    )  # fmt: skip
    args = parser.parse_args()
    global CLIENT, SENDER_VERSION
    CLIENT, SENDER_VERSION = args.client, args.sender_version
    if args.load_against:  # background load for bench/sse_bench.py --ingest-load
        sent = await keep_sending(
            args.load_against, uuid.UUID(args.project), args.token, args.seconds
        )
        print(json.dumps({"events_sent": sent}))
        return
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                               "sender_version": SENDER_VERSION,
                               "scanned_on_ingest": __version__ != SENDER_VERSION}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                key = store if workers == 1 else f"{store}_workers_{workers}"
                key += f"_runs_{args.runs}" if args.runs > 1 else ""
                repeats = []
                for index in range(args.repeat):
                    place = Path(tmp) / f"repeat-{index}"
                    place.mkdir(exist_ok=True)
                    repeats.append(await one_store(store, args.events, workers, place, args.runs))
                results[key] = repeats[0] if args.repeat == 1 else medians(repeats)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
