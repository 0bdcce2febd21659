"""Ingest benchmark: events/s end to end through the HTTP API, against a raw
bulk insert of the same rows into the same database, in one run. Prints JSON.

For each store (PostgreSQL, SQLite) a fresh database gets a real
``cogumi serve`` process (throttle lifted); 8 concurrent senders post batches
of 200 sidecar-shaped events with httpx into a running campaign (so every
batch also reserves its ``seq`` range). The baseline writes the very rows the
server would store, with asyncpg ``COPY`` (PostgreSQL) or stdlib
``sqlite3.executemany`` (SQLite), and the ratio says how much of the raw
write speed survives HTTP, validation, redaction bounds and transactions.

Usage: python bench/ingest_bench.py [--events N] [--stores postgresql,sqlite]
PostgreSQL: the server at COGUMI_BENCH_PG_ADMIN_URL
(default postgresql://postgres@127.0.0.1:5432/postgres); a scratch database
is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.db.migrate import upgrade
from cogumi.events.models import Event
from cogumi.events.schemas import EventIn
from cogumi.events.service import event_row
from cogumi.projects.models import Project, SidecarToken
from cogumi.runs.models import Run, RunStatus
from cogumi.tenancy import security
from cogumi.tenancy.models import Organization

PG_ADMIN = os.environ.get(
    "COGUMI_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
COGUMI = str(Path(sys.executable).parent / "cogumi")
BATCH, SENDERS = 200, 8
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


async def seed(url: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, uuid.UUID]:
    """An org, a project with a sidecar token, a running campaign."""
    engine = make_engine(url)
    issued = security.issue_prefixed_token("cgs")
    org_id, project_id, token_id, run_id = (uuid.uuid4() for _ in range(4))
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            session.add(Organization(id=org_id, name="bench"))
            await session.flush()
            session.add(Project(id=project_id, org_id=org_id, name="bench"))
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


async def send_all(base: str, project_id: uuid.UUID, token: str, total: int) -> float:
    batches = [[sample_event(i * BATCH + j) for j in range(BATCH)] for i in range(total // BATCH)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for events in batches:
        queue.put_nowait(events)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            events = queue.get_nowait()
            body = {"project_id": str(project_id), "batch_id": uuid.uuid4().hex,
                    "sidecar_version": "bench", "events": events}  # fmt: skip
            response = await client.post("/api/ingest/events", json=body)
            assert response.status_code == 200, response.text

    headers = {"X-Sidecar-Token": token}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, trust_env=False) as c:
        await sender_warmup(c, project_id)
        started = time.perf_counter()
        await asyncio.gather(*(sender(c) for _ in range(SENDERS)))
        return time.perf_counter() - started


async def sender_warmup(client: httpx.AsyncClient, project_id: uuid.UUID) -> None:
    body = {
        "project_id": str(project_id),
        "batch_id": uuid.uuid4().hex,
        "events": [sample_event(0)],
    }
    assert (await client.post("/api/ingest/events", json=body)).status_code == 200


def stored_rows(
    org_id: uuid.UUID, project_id: uuid.UUID, token_id: uuid.UUID, n: int
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        event_row(EventIn.model_validate(sample_event(i)), org_id=org_id, project_id=project_id,
                  run_id=None, seq=None, token_id=token_id, received_at=now)
        for i in range(n)
    ]  # fmt: skip


async def raw_postgres(dsn: str, rows: list[dict[str, Any]]) -> float:
    columns = [c.name for c in Event.__table__.columns]
    records = [tuple(_pg_value(row[c]) for c in columns) for row in rows]
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table("events", records=records, columns=columns)
        return time.perf_counter() - started
    finally:
        await conn.close()


def _pg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def raw_sqlite(path: str, rows: list[dict[str, Any]]) -> float:
    columns = [c.name for c in Event.__table__.columns]
    records = [tuple(_sqlite_value(row[c]) for c in columns) for row in rows]
    sql = f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        started = time.perf_counter()
        with conn:
            conn.executemany(sql, records)
        return time.perf_counter() - started
    finally:
        conn.close()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.isoformat()
    return _pg_value(value)


async def measure(store: str, url: str, total: int, data_dir: Path) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, url)
    org_id, project_id, token_id, token, _ = await seed(url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env |= {"COGUMI_DATABASE_URL": url, "COGUMI_DATA_DIR": str(data_dir), "COGUMI_PORT": str(port),
            "COGUMI_INGEST_RATE_LIMIT_PER_MIN": str(10**9), "COGUMI_LOG_LEVEL": "WARNING"}  # fmt: skip
    server_log = data_dir / f"serve-{store}.log"
    with server_log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            COGUMI, "serve", env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_up(base, proc)
        api_sec = await send_all(base, project_id, token, total)
    except Exception:
        sys.stderr.write(server_log.read_text(errors="replace")[-6000:])
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    rows = stored_rows(org_id, project_id, token_id, total)
    if store == "postgresql":
        raw_sec = await raw_postgres(url.replace("postgresql+asyncpg://", "postgresql://"), rows)
    else:
        raw_sec = await asyncio.to_thread(raw_sqlite, url.split(":///", 1)[1], rows)
    api_rate, raw_rate = total / api_sec, total / raw_sec
    return {
        "events": total,
        "batch": BATCH,
        "senders": SENDERS,
        "api_events_per_sec": round(api_rate),
        "raw_events_per_sec": round(raw_rate),
        "raw_method": "asyncpg COPY" if store == "postgresql" else "sqlite3 executemany",
        "ratio_to_raw": round(api_rate / raw_rate, 3),
        "target_ratio": TARGET_RATIO,
    }


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--stores", default="postgresql,sqlite")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            if store == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp}/bench.db"
                results[store] = await measure(store, url, args.events, Path(tmp))
                continue
            name = f"cogumi_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = (
                PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
                + f"/{name}"
            )
            try:
                results[store] = await measure(store, url, args.events, Path(tmp))
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
