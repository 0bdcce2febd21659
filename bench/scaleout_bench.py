"""Scale-out benchmark: the PostgreSQL + Redis deployment against the embedded one
(SQLite, in-process queue) on the same machine, in the same run. Prints JSON.

Both deployments are real processes brought up by the reliability suite's
harness (``tests/reliability/cluster.py``): ``cogumi serve`` and ``cogumi
worker`` processes, organisations signed up through the API, and one project
per demo agent, each agent (fixed reply latency) behind its own ``cogumi
sidecar``. Production lease and reaper intervals (60 s, 10 s); throttle,
event cap and storage quota lifted so every event is stored.

The two deployments are up at the same time and measured in turns, phase by
phase, each one's processes stopped (SIGSTOP) while the other is measured:
on a machine shared with other work, each pair of figures is then taken
minutes apart instead of a quarter of an hour. Phases:

- ``idle``: nothing but the sidecars' heartbeats, for the background load;
- ``campaigns``: one campaign per agent project, all started at once
  (intensity low); campaigns per minute from the runs' own timestamps
  (first created to last ended), turns per second, CPU per campaign. Scale-out:
  with 1 and then 2 ``cogumi worker`` processes (one ``serve``);
- ``ingest``: a fixed number of events in batches of 200 from concurrent
  senders (16), each sender a sidecar token of its own ingest-only project
  whose campaign is running (so each batch also reserves its ``seq`` range),
  spread over the API processes; a sender waits 10 s for an answer, as a
  sidecar does before it retries (a slower answer is an error); the events
  stored are counted back.
  Scale-out: with 1 and 2 ``serve`` processes, and one ``serve --workers 2``;
- ``sweep``: the ingest concurrency pushed up, a fixed time per level, with
  latency percentiles and errors, to see what gives first.

During every phase PostgreSQL (``pg_stat_database`` deltas of the cluster's
own database: commits, rows inserted/updated/fetched, deadlocks; connections
sampled from ``pg_stat_activity``; CPU of its backends) and Redis (``INFO``:
per-command calls, ``instantaneous_ops_per_sec`` sampled, clients, CPU) are
measured, with the CPU seconds of each process role and the load average
before and after. A PostgreSQL backend publishes its counters up to 10 s
late, so the counters are read 11 s after each phase, less the idle
background measured first for those seconds.

Sidecars run with the product's defaults (15 s heartbeat, 500 ms batch
flush; the harness starts them with 1 s and 200 ms, ``--fast-sidecars``
keeps that): while its project's campaign runs, a sidecar sends a watermark
batch every 500 ms, and every turn waits for one (its evidence window
closes); a campaign's first turns can wait for the heartbeat that tells the
sidecar a campaign started.

Usage::

    python bench/scaleout_bench.py [--quick] [--modes embedded,scaleout]
        [--campaigns 24] [--latency-ms 100] [--events 40000] [--senders 16] [--sweep 8,32,128]
        [--sweep-sec 10] [--out FILE]

``--quick`` (about four minutes on a quiet machine): 8 campaigns of S1-S5,
6,000 events per ingest phase, no ``serve --workers 2`` phase, sweep 8,64 at
3 s. The full run takes 15-20 minutes. Needs PostgreSQL at 127.0.0.1:5432 (or
``COGUMI_TEST_PG_ADMIN_URL``) and ``redis-server`` on the PATH; a scratch
database and a private redis-server are created and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the reliability harness
sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import BATCH, sample_event
from tests.reliability.cluster import SECRET_KEY, Cluster, Org, start_cluster, stop_cluster
from tests.reliability.processes import Proc
from tests.scan.processes import clean_env

from cogumi import __version__
from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.events.models import Event
from cogumi.findings.models import Finding
from cogumi.runs.models import Run, RunStatus

ALL_SCRIPTS = [f"S{i}" for i in range(1, 6)] + [f"P{i:02d}" for i in range(1, 17)]
LIFTED = {
    "COGUMI_INGEST_RATE_LIMIT_PER_MIN": str(10**9),
    "COGUMI_QUOTA_EVENTS_PER_RUN": str(10**9),
    "COGUMI_QUOTA_STORAGE_BYTES": str(10**13),
    "COGUMI_QUOTA_PROJECTS": "10000",
    "COGUMI_QUOTA_RUNS_PER_MONTH": "100000",
    "COGUMI_QUOTA_RUNS_PER_DAY_PER_PROJECT": "10000",
    "COGUMI_LOGIN_RATE_LIMIT": "10000",
}
"""Limits that would otherwise refuse the bench's load (the sizing is about capacity)."""
PRODUCTION = {"COGUMI_RUN_LEASE_SEC": "60", "COGUMI_RUN_REAPER_INTERVAL_SEC": "10"}
"""The harness shortens these for fault injection; the defaults cost less."""
ORGS = 4
BENCH_OWNER = "scaleout-bench"
SIDECAR_TIMEOUT_SEC = 10.0
"""How long a sidecar waits for an ingest answer before it retries (its ApiClient default):
the bench's senders give up as soon, so a slower answer counts as an error."""
PLACEHOLDER = b"B" * 32  # a batch_id's place in a pre-encoded body (uuid4().hex is 32 chars)


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message} (load {load()[0]})\n")
    sys.stderr.flush()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- CPU of process trees (Linux /proc) ---------------------------------------------


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds so far) for every process, in one scan."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def tree_cpu(table: dict[int, tuple[int, float]], root: int) -> float:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += table.get(pid, (0, 0.0))[1]
        frontier.extend(children.get(pid, []))
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def roles(cluster: Cluster) -> dict[str, list[Proc]]:
    return {
        "serve": [s.proc for s in cluster.serves],
        "worker": [w.proc for w in cluster.workers],
        "agents": [p.agent for p in cluster.projects],
        "sidecars": [p.sidecar for p in cluster.projects],
    }


# --- PostgreSQL and Redis load ----------------------------------------------------------

PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted",
               "tup_fetched", "tup_returned", "blks_read", "blks_hit", "deadlocks")  # fmt: skip
PG_SETTLE_SEC = 11.0
"""A PostgreSQL backend publishes its counters at most once a second, and one left
idle with counters pending publishes them 10 s later: the end of a phase is read
this long after it, less the idle background (measured first) for that time."""


async def api_requests(cluster: Cluster) -> Counter[str]:
    """Requests each ``serve`` answered so far, by method and route template (its
    ``/metrics``; one process of a ``serve --workers N`` port answers for itself only)."""
    counts: Counter[str] = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        for serve in cluster.serves:
            text = (await client.get(f"{serve.url}/metrics")).text
            for line in text.splitlines():
                if line.startswith("cogumi_http_requests_total{"):
                    labels, value = line.rsplit(" ", 1)
                    fields = dict(part.split("=", 1) for part in labels[27:-1].split(","))
                    route = f"{fields['method'].strip(chr(34))} {fields['route'].strip(chr(34))}"
                    if not route.endswith("/metrics"):
                        counts[route] += int(float(value))
    return counts


@dataclass
class Usage:
    """CPU of the deployment's processes and Redis' counters, at one instant."""

    at: float
    cpu: dict[str, float]
    bench_cpu: float
    requests: Counter[str] = field(default_factory=Counter)
    pg_backends: dict[int, float] = field(default_factory=dict)
    redis_calls: dict[str, int] = field(default_factory=dict)
    redis_stats: dict[str, float] = field(default_factory=dict)


@dataclass
class Probe:
    """Reads the load of one deployment: its processes, and PostgreSQL and Redis if any."""

    cluster: Cluster
    pg: asyncpg.Connection | None = None
    redis: Redis | None = None
    pg_own: int = 0  # our statements: each one is a commit in pg_stat_database
    redis_own: int = 0  # our INFO commands
    baseline: dict[str, float] = field(default_factory=dict)  # idle PostgreSQL rates
    lock_waits: Counter[str] = field(default_factory=Counter)  # statement -> samples waiting

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, cluster: Cluster, scaleout: bool) -> AsyncIterator[Probe]:
        probe = cls(cluster)
        if scaleout:
            dsn = cluster.database_url.replace("postgresql+asyncpg://", "postgresql://")
            probe.pg = await asyncpg.connect(dsn)
            probe.redis = Redis.from_url(cluster.redis_url)
        try:
            yield probe
        finally:
            if probe.pg is not None:
                await probe.pg.close()
            if probe.redis is not None:
                await probe.redis.aclose()

    async def _fetch(self, query: str) -> list[asyncpg.Record]:
        assert self.pg is not None
        self.pg_own += 1
        return list(await self.pg.fetch(query))

    async def _info(self, section: str | None = None) -> dict[str, Any]:
        assert self.redis is not None
        self.redis_own += 1
        return dict(await (self.redis.info(section) if section else self.redis.info()))

    async def pg_counters(self) -> dict[str, int]:
        if self.pg is None:
            return {}
        row = (await self._fetch(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database "
                                 "WHERE datname = current_database()"))[0]  # fmt: skip
        counters = {name: int(row[name]) for name in PG_COUNTERS}
        for table in await self._fetch(  # which tables the reads go to
            "SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n "
            "FROM pg_stat_user_tables"
        ):
            counters[f"read:{table['relname']}"] = int(table["n"])
        return counters

    async def usage(self) -> Usage:
        table = proc_table()
        cpu = {role: sum(tree_cpu(table, p.pid) for p in procs if p.process is not None)
               for role, procs in roles(self.cluster).items()}  # fmt: skip
        now = Usage(at=time.perf_counter(), cpu=cpu, bench_cpu=time.process_time(),
                    requests=await api_requests(self.cluster))  # fmt: skip
        if self.pg is not None:
            pids = await self._fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            now.pg_backends = {r["pid"]: table[r["pid"]][1] for r in pids if r["pid"] in table}
        if self.redis is not None:
            stats = await self._info("commandstats")
            now.redis_calls = {
                k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
            }
            info = await self._info()
            now.redis_stats = {
                "commands": info["total_commands_processed"],
                "net_in_bytes": info["total_net_input_bytes"],
                "net_out_bytes": info["total_net_output_bytes"],
                "cpu_sec": info["used_cpu_user"] + info["used_cpu_sys"],
            }
        return now

    async def sample(self, into: dict[str, list[float]]) -> None:
        """Point-in-time gauges, every second until cancelled."""
        while True:
            if self.pg is not None:
                row = (await self._fetch(
                    "SELECT count(*) AS connections, count(*) FILTER (WHERE state = 'active') "
                    "AS active, count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting_lock "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"))[0]  # fmt: skip
                for key in ("connections", "active", "waiting_lock"):
                    into.setdefault(f"pg_{key}", []).append(row[key])
                if row["waiting_lock"]:  # which statements wait for a lock
                    for wait in await self._fetch(
                        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS q "
                        "FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    ):
                        self.lock_waits[wait["q"]] += 1
            if self.redis is not None:
                info = await self._info()
                into.setdefault("redis_ops_per_sec", []).append(info["instantaneous_ops_per_sec"])
                into.setdefault("redis_clients", []).append(info["connected_clients"])
            await asyncio.sleep(1)

    @contextlib.asynccontextmanager
    async def phase(self, result: dict[str, Any], *, idle: bool = False) -> AsyncIterator[None]:
        """Measure the load while the block runs; adds it to ``result``.

        ``idle``: this is the background; its PostgreSQL rates become the baseline
        taken out of every later phase's settling time.
        """
        result["load_average_before"] = load()
        gauges: dict[str, list[float]] = {}
        self.lock_waits.clear()
        pg_before = await self.pg_counters()
        pg_own_before = self.pg_own
        before = await self.usage()
        # Redis counts a command after running it: from here on, each of our INFO calls
        # is in the totals but the last one (its own reading), while the previous is.
        redis_own_before = self.redis_own
        sampler = asyncio.ensure_future(self.sample(gauges))
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        after = await self.usage()
        result["load_average_after"] = load()
        sec = after.at - before.at
        result["cpu_sec"] = {
            role: round(after.cpu[role] - before.cpu[role], 2) for role in after.cpu
        }
        result["cpu_sec"]["bench_client"] = round(after.bench_cpu - before.bench_cpu, 2)
        result["rss_mb_max"] = {  # the largest process of each role, at the end
            role: round(max((rss_mb(p.pid) for p in procs if p.alive), default=0.0))
            for role, procs in roles(self.cluster).items()
        }
        requests = after.requests - before.requests
        result["api_requests"] = dict(requests.most_common(6))
        if requests.total():
            result["serve_cpu_ms_per_request"] = round(
                result["cpu_sec"]["serve"] / requests.total() * 1000, 2
            )
        if self.redis is not None:
            self._redis_result(
                result, before, after, gauges, sec, self.redis_own - redis_own_before
            )
        if self.pg is not None:
            await asyncio.sleep(PG_SETTLE_SEC)
            settled = time.perf_counter() - after.at
            pg_after = await self.pg_counters()
            delta = {k: v - pg_before.get(k, 0) for k, v in pg_after.items()}
            delta["xact_commit"] -= self.pg_own - pg_own_before  # our own statements
            if idle:
                self.baseline = {k: v / (sec + settled) for k, v in delta.items()}
            else:  # the settling time's background is not the phase's
                delta = {k: v - round(self.baseline.get(k, 0.0) * settled)
                         for k, v in delta.items()}  # fmt: skip
            backend_cpu = sum(cpu - before.pg_backends.get(pid, 0.0)
                              for pid, cpu in after.pg_backends.items())  # fmt: skip
            reads = Counter({k[5:]: v for k, v in delta.items() if k.startswith("read:") and v > 0})
            totals = {k: delta[k] for k in PG_COUNTERS}
            result["postgres"] = {
                "totals": totals,
                **{
                    f"{k}_per_sec": round(v / sec, 1) for k, v in totals.items() if k != "deadlocks"
                },
                "rows_read_by_table": dict(reads.most_common(5)),
                "connections_max": max(gauges.get("pg_connections", [0])),
                "active_max": max(gauges.get("pg_active", [0])),
                "waiting_on_lock_max": max(gauges.get("pg_waiting_lock", [0])),
                "backend_cpu_sec": round(backend_cpu, 2),
                "lock_waits_sampled": dict(self.lock_waits.most_common(4)),
            }

    @staticmethod
    def _redis_result(result: dict[str, Any], before: Usage, after: Usage,
                      gauges: dict[str, list[float]], sec: float, own: int) -> None:  # fmt: skip
        calls = {k: v - before.redis_calls.get(k, 0) for k, v in after.redis_calls.items()}
        calls["info"] = calls.get("info", 0) - own
        ops = gauges.get("redis_ops_per_sec", [0])
        commands = after.redis_stats["commands"] - before.redis_stats["commands"] - own
        net_in = after.redis_stats["net_in_bytes"] - before.redis_stats["net_in_bytes"]
        result["redis"] = {
            "commands": int(commands),
            "commands_per_sec": round(commands / sec, 1),
            "instantaneous_ops_per_sec_mean": round(statistics.fmean(ops), 1),
            "instantaneous_ops_per_sec_max": max(ops),
            "clients_max": max(gauges.get("redis_clients", [0])),
            "cpu_sec": round(after.redis_stats["cpu_sec"] - before.redis_stats["cpu_sec"], 2),
            "net_in_kb_per_sec": round(net_in / sec / 1024, 1),
            "top_commands": dict(Counter({k: v for k, v in calls.items() if v > 0}).most_common(8)),
        }


# --- deployments ----------------------------------------------------------------------


async def embedded(tmp: Path, *, projects: int, agent_args: list[str]) -> Cluster:
    """One ``cogumi serve`` on SQLite with its in-process queue and bus, the same agents."""
    url = f"sqlite+aiosqlite:///{tmp}/embedded.db"
    env = clean_env(COGUMI_DATABASE_URL=url, COGUMI_SECRET_KEY=SECRET_KEY,
                    COGUMI_RETENTION_INTERVAL_SEC="0", COGUMI_SHUTDOWN_GRACE_SEC="5",
                    COGUMI_LOG_LEVEL="INFO", **LIFTED, **PRODUCTION)  # fmt: skip
    engine = make_engine(url)
    # No Redis in this mode: the harness's redis process is never started.
    unused = Proc(name="redis-unused", argv=["true"], env=env, log=tmp / "logs" / "redis.log")
    cluster = Cluster(tmp=tmp, database_url=url, redis_port=0, env=env, engine=engine,
                      sessionmaker=make_sessionmaker(engine), redis=unused,
                      agent_args=agent_args)  # fmt: skip
    try:
        serve = await cluster.add_serve()
        await serve.wait_ready()
        cluster.orgs = [await cluster.signup(f"bench-org-{i}") for i in range(ORGS)]
        for i in range(projects):  # one at a time: SQLite has one writer
            await cluster.add_project(cluster.orgs[i % ORGS], i)
        cluster.projects.sort(key=lambda p: p.index)
        await cluster.wait_projects_ready(cluster.projects)
    except BaseException:
        sys.stderr.write(cluster.log_report(60) + "\n")
        await cluster.close()
        raise
    return cluster


HARNESS_SIDECAR = ("HEARTBEAT_INTERVAL_SEC", "BATCH_FLUSH_MS")
"""Sidecar settings the harness shortens for fast tests (1 s heartbeat, 200 ms flush)."""


async def sidecar_defaults(cluster: Cluster) -> None:
    """Restart every sidecar with the product's defaults for what the harness shortens
    (15 s heartbeat, 500 ms batch flush), so background traffic is what users see."""

    async def restart(proc: Proc) -> None:
        await proc.stop()
        for name in HARNESS_SIDECAR:
            proc.env.pop(name, None)
        await proc.start()

    await asyncio.gather(*(restart(p.sidecar) for p in cluster.projects))
    await cluster.wait_projects_ready(cluster.projects)


async def ingest_projects(cluster: Cluster, count: int) -> list[tuple[Org, str, str]]:
    """Projects without an agent, each with a sidecar token: (org, project id, token)."""
    base = cluster.url()

    async def one(i: int) -> tuple[Org, str, str]:
        org = cluster.orgs[i % len(cluster.orgs)]
        made = await org.client.post(f"{base}/api/projects", json={"name": f"ingest-{i:03d}"})
        assert made.status_code == 201, made.text
        project_id = made.json()["id"]
        token = await org.client.post(f"{base}/api/projects/{project_id}/sidecar-tokens",
                                      json={"name": "bench"})  # fmt: skip
        assert token.status_code == 201, token.text
        return org, project_id, token.json()["token"]

    made: list[tuple[Org, str, str]] = []
    for start in range(0, count, 16):  # a few at a time: sign-up traffic is not the subject
        made += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 16))))
    return made


@contextlib.asynccontextmanager
async def running_campaigns(
    cluster: Cluster, targets: Sequence[tuple[Org, str, str]]
) -> AsyncIterator[list[uuid.UUID]]:
    """A running campaign on each project (no worker: its lease is far ahead), ended after."""
    ids = [uuid.uuid4() for _ in targets]
    now = datetime.now(UTC)
    async with transaction(cluster.sessionmaker) as session:
        for run_id, (org, project_id, _) in zip(ids, targets, strict=True):
            session.add(Run(id=run_id, org_id=org.id, project_id=uuid.UUID(project_id),
                            status=RunStatus.running, started_at=now, attempts=1,
                            config={"quota": {"events_per_run": 10**9}},
                            lease_owner=BENCH_OWNER, lease_expires_at=now + timedelta(hours=6)))  # fmt: skip
    try:
        yield ids
    finally:
        async with transaction(cluster.sessionmaker) as session:
            await session.execute(
                update(Run).where(Run.id.in_(ids))
                .values(status=RunStatus.completed, ended_at=datetime.now(UTC), lease_owner=None)
            )  # fmt: skip


# --- phases ---------------------------------------------------------------------------


async def idle_phase(probe: Probe, sec: float) -> dict[str, Any]:
    result: dict[str, Any] = {"phase": "idle", "sec": sec}
    async with probe.phase(result, idle=True):
        await asyncio.sleep(sec)
    return result


async def campaign_phase(
    cluster: Cluster, probe: Probe, *, scripts: list[str], latency_ms: int
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "phase": "campaigns",
        "api_processes": len(cluster.serves),
        "worker_processes": len(cluster.workers),
        "campaigns": len(cluster.projects),
        "scripts": len(scripts),
        "intensity": "low",
        "agent_latency_ms": latency_ms,
    }
    async with probe.phase(result):
        runs = await cluster.start_campaigns(cluster.projects, scripts=scripts, intensity="low")
        final = await cluster.wait_final(runs, timeout=1800)
    ids = [uuid.UUID(r) for r in runs]
    async with cluster.sessionmaker() as session:
        messages = await session.scalar(select(func.count()).select_from(Event).where(
            Event.run_id.in_(ids), Event.type == "agent.message"))  # fmt: skip
        events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.run_id.in_(ids))
        )
        findings = await session.scalar(
            select(func.count()).select_from(Finding).where(Finding.run_id.in_(ids))
        )
    rows = list(final.values())
    first = min(_utc(r.created_at) for r in rows)
    last = max(_utc(r.ended_at or datetime.now(UTC)) for r in rows)
    wall = (last - first).total_seconds()
    durations = [(_utc(r.ended_at) - _utc(r.started_at)).total_seconds()
                 for r in rows if r.ended_at and r.started_at]  # fmt: skip
    waits = [(_utc(r.started_at) - _utc(r.created_at)).total_seconds()
             for r in rows if r.started_at]  # fmt: skip
    turns = int(messages or 0) // 2
    busy = result["cpu_sec"]["serve"] + result["cpu_sec"]["worker"]
    result.update({
        "statuses": dict(Counter(r.status.value for r in rows)),
        "failure_reasons": sorted({r.failure_reason for r in rows if r.failure_reason}),
        "wall_sec": round(wall, 2),
        "campaigns_per_min": round(len(rows) / wall * 60, 2),
        "turns": turns,
        "turns_per_sec": round(turns / wall, 2),
        "events": int(events or 0),
        "findings": int(findings or 0),
        "run_sec_p50": round(statistics.median(durations), 2) if durations else None,
        "run_sec_max": round(max(durations), 2) if durations else None,
        "queue_wait_sec_max": round(max(waits), 2) if waits else None,
        "app_cpu_sec_per_campaign": round(busy / len(rows), 2),
    })  # fmt: skip
    if "postgres" in result and turns:
        pg = result["postgres"]
        pg["commits_per_turn"] = round(pg["totals"]["xact_commit"] / turns, 2)
        pg["rows_inserted_per_turn"] = round(pg["totals"]["tup_inserted"] / turns, 2)
        pg["backend_cpu_sec_per_campaign"] = round(pg["backend_cpu_sec"] / len(rows), 3)
    if "redis" in result:
        result["redis"]["commands_per_campaign"] = round(result["redis"]["commands"] / len(rows), 1)
    return result


def _utc(value: datetime | None) -> datetime:
    assert value is not None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def batch_templates(targets: Sequence[tuple[Org, str, str]]) -> list[bytes]:
    """One pre-encoded body per project (encoding is not the server's cost); the
    placeholder takes a fresh batch_id per request, so each batch is stored."""
    events = [sample_event(j) for j in range(BATCH)]
    return [json.dumps({"project_id": project_id, "batch_id": PLACEHOLDER.decode(),
                        "sidecar_version": __version__, "events": events}).encode()
            for _, project_id, _ in targets]  # fmt: skip


async def ingest_phase(
    cluster: Cluster,
    probe: Probe,
    targets: Sequence[tuple[Org, str, str]],
    *,
    serves: Sequence[str],
    senders: int,
    events: int | None = None,
    sec: float | None = None,
    label: str = "ingest",
) -> dict[str, Any]:
    """``senders`` concurrent sidecars: either ``events`` in all, or as many as fit in ``sec``."""
    templates = batch_templates(targets)
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    accepted = 0
    batches = (events or 0) // BATCH
    deadline = 0.0
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    clients = {url: httpx.AsyncClient(base_url=url, timeout=SIDECAR_TIMEOUT_SEC, trust_env=False,
                                      limits=limits)
               for url in serves}  # fmt: skip

    async def sender(i: int) -> None:
        nonlocal batches, accepted
        _, _, token = targets[i % len(targets)]
        template = templates[i % len(targets)]
        client = clients[serves[i % len(serves)]]
        headers = {"X-Sidecar-Token": token, "Content-Type": "application/json"}
        while (batches > 0) if sec is None else (time.perf_counter() < deadline):
            batches -= 1
            body = template.replace(PLACEHOLDER, uuid.uuid4().hex.encode(), 1)
            started = time.perf_counter()
            try:
                response = await client.post("/api/ingest/events", content=body, headers=headers)
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                continue
            finally:
                latencies.append(time.perf_counter() - started)
            outcomes[str(response.status_code)] += 1
            if response.status_code == 200:
                accepted += int(response.json()["accepted"])

    result: dict[str, Any] = {
        "phase": label,
        "api_processes": len(serves),
        "senders": senders,
        "batch": BATCH,
        "projects": min(senders, len(targets)),
    }
    try:
        offsets = log_offsets(cluster)
        async with running_campaigns(cluster, targets[:senders]) as runs:
            async with probe.phase(result):
                started = time.perf_counter()
                deadline = started + (sec or 0)
                await asyncio.gather(*(sender(i) for i in range(senders)))
                elapsed = time.perf_counter() - started
            async with cluster.sessionmaker() as session:
                stored = await session.scalar(
                    select(func.count()).select_from(Event).where(Event.run_id.in_(runs))
                )
    finally:
        for client in clients.values():
            await client.aclose()
    quantiles = (
        statistics.quantiles(latencies, n=100, method="inclusive")
        if len(latencies) > 1
        else latencies * 99
    )
    errors = {k: v for k, v in outcomes.items() if k != "200"}
    if errors:
        result["server_errors"] = server_errors(offsets)
    result.update({
        "sec": round(elapsed, 2),
        "requests": sum(outcomes.values()),
        "errors": errors,
        "error_rate": round(sum(errors.values()) / max(1, sum(outcomes.values())), 4),
        "events_accepted": accepted,
        "events_stored": int(stored or 0),  # read back from the database: must equal accepted
        "events_per_sec": round(accepted / elapsed),
        "latency_ms": {"p50": round(quantiles[49] * 1000, 1), "p95": round(quantiles[94] * 1000, 1),
                       "p99": round(quantiles[98] * 1000, 1),
                       "max": round(max(latencies, default=0) * 1000, 1)},
        "server_cpu_ms_per_1k_events": (
            round(result["cpu_sec"]["serve"] / accepted * 1e6, 1) if accepted else None),
    })  # fmt: skip
    if "postgres" in result and accepted:
        pg, stored = result["postgres"], outcomes["200"]
        pg["backend_cpu_ms_per_1k_events"] = round(pg["backend_cpu_sec"] / accepted * 1e6, 1)
        pg["commits_per_batch"] = round(pg["totals"]["xact_commit"] / stored, 2)
        pg["rows_inserted_per_event"] = round(pg["totals"]["tup_inserted"] / accepted, 3)
    if "redis" in result and outcomes["200"]:
        result["redis"]["commands_per_batch"] = round(
            result["redis"]["commands"] / outcomes["200"], 2
        )
    log(f"{label} api={len(serves)} senders={senders}: {result['events_per_sec']} events/s, "
        f"p99 {result['latency_ms']['p99']} ms, errors {errors}")  # fmt: skip
    return result


def log_offsets(cluster: Cluster) -> dict[Path, int]:
    return {s.proc.log: s.proc.log.stat().st_size for s in cluster.serves if s.proc.log.exists()}


def server_errors(offsets: dict[Path, int]) -> dict[str, int]:
    """ERROR lines the serve processes logged since ``offsets``: message and the
    exception's last line, with how often each occurred."""
    seen: Counter[str] = Counter()
    for path, offset in offsets.items():
        with path.open("rb") as log_file:
            log_file.seek(offset)
            lines = log_file.read().decode(errors="replace").splitlines()
        for line in lines:
            if '"level": "ERROR"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                seen[line[:300]] += 1
                continue
            last = (record.get("exception") or "").strip().splitlines()[-1:] or [""]
            seen[f"{record.get('message', '')[:200]} | {last[0][:200]}"] += 1
    return dict(seen)


# --- the two deployments --------------------------------------------------------------


@dataclass
class Plan:
    campaigns: int
    scripts: list[str]
    latency_ms: int
    events: int
    senders: int
    sweep: list[int]
    sweep_sec: float
    idle_sec: float
    serve_workers_phase: bool  # also ingest through one `serve --workers 2`
    fast_sidecars: bool  # keep the harness's 1 s heartbeat and 200 ms flush

    @property
    def agent_args(self) -> list[str]:
        return ["--latency-ms", str(self.latency_ms)]


async def serve_workers_2(
    cluster: Cluster, probe: Probe, targets: Sequence[tuple[Org, str, str]], plan: Plan
) -> dict[str, Any]:
    """Ingest through one port served by two processes (``serve --workers 2``)."""
    cluster.env["COGUMI_SERVE_WORKERS"] = "2"  # read by the process at start
    try:
        multi = await cluster.add_serve()
    finally:
        del cluster.env["COGUMI_SERVE_WORKERS"]
    try:
        await multi.wait_ready()
        result = await ingest_phase(cluster, probe, targets, serves=[multi.url],
                                    senders=plan.senders, events=plan.events,
                                    label="ingest_serve_workers_2")  # fmt: skip
    finally:
        await multi.proc.stop()
        cluster.serves.remove(multi)
        cluster.retired.append(multi.proc)
    result["api_processes"] = 2
    # /metrics answers for one of the two processes only: no request counts here.
    result.pop("api_requests", None)
    result.pop("serve_cpu_ms_per_request", None)
    return result


@dataclass
class Deployment:
    """One deployment under test, its ingest projects, its probe and its results."""

    mode: str  # "embedded" | "scaleout"
    cluster: Cluster
    probe: Probe
    targets: list[tuple[Org, str, str]]
    phases: list[dict[str, Any]] = field(default_factory=list)

    def signal(self, sig: signal.Signals) -> None:
        for proc in self.cluster.procs():
            if proc.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    @contextlib.asynccontextmanager
    async def awake(self) -> AsyncIterator[None]:
        """Its processes run only inside this block (SIGSTOP outside), so the other
        deployment's phase is not measured on a machine shared with this one."""
        self.signal(signal.SIGCONT)
        await asyncio.sleep(1)  # timers that fired while stopped (heartbeats) settle
        try:
            yield
        finally:
            await self.quiesce()
            self.signal(signal.SIGSTOP)

    async def quiesce(self, limit_sec: float = 60) -> None:
        """Until its serve and worker processes are idle: requests a sender gave up on
        still run in the server, and must not be frozen half-way into the next phase."""
        procs = [s.proc for s in self.cluster.serves] + [w.proc for w in self.cluster.workers]
        deadline = time.monotonic() + limit_sec

        def busy() -> float:
            table = proc_table()
            return sum(tree_cpu(table, p.pid) for p in procs if p.alive)

        before = busy()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = busy()
            if now - before < 0.05:  # under 10% of a core
                return
            before = now


async def bring_up(
    mode: str, tmp: Path, plan: Plan, stack: contextlib.AsyncExitStack
) -> Deployment:
    """Start one deployment (stopped again on the way out of ``stack``).

    A second try on failure: the harness picks free ports before its processes
    bind them, and with two deployments starting ~100 processes another one
    occasionally takes a port in between.
    """
    for attempt in (1, 2):
        where = tmp / f"{mode}-{attempt}"
        where.mkdir()
        try:
            if mode == "embedded":
                log("embedded: starting serve, agents and sidecars")
                cluster = await embedded(where, projects=plan.campaigns,
                                         agent_args=plan.agent_args)  # fmt: skip
                stack.push_async_callback(cluster.close)
            else:
                log("scale-out: starting PostgreSQL database, redis-server, 1 serve, 1 worker, "
                    "agents")  # fmt: skip
                cluster = await start_cluster(where, serves=1, workers=1, orgs=ORGS,
                                              projects=plan.campaigns,
                                              env={**LIFTED, **PRODUCTION},
                                              agent_args=plan.agent_args)  # fmt: skip
                stack.push_async_callback(stop_cluster, cluster)
            break
        except AssertionError as exc:  # a process of the deployment did not come up
            if attempt == 2:
                raise
            log(f"{mode}: start-up failed ({str(exc).splitlines()[0]}); trying again")
    if not plan.fast_sidecars:
        await sidecar_defaults(cluster)
    deployment = Deployment(mode, cluster, Probe(cluster), [])
    # Resumed before stopping: SIGTERM does not reach a stopped process.
    stack.callback(deployment.signal, signal.SIGCONT)
    deployment.targets = await ingest_projects(cluster, max(plan.senders, *plan.sweep))
    probe = await stack.enter_async_context(Probe.open(cluster, scaleout=mode == "scaleout"))
    deployment.probe = probe
    deployment.signal(signal.SIGSTOP)
    return deployment


async def measure(deployments: list[Deployment], plan: Plan) -> None:
    """Every phase for each deployment in turn, so each pair is measured minutes apart."""

    async def each(what: str, phase: Callable[[Deployment], Awaitable[dict[str, Any]]]) -> None:
        for d in deployments:
            async with d.awake():
                try:
                    d.phases.append(await phase(d))
                except BaseException:
                    sys.stderr.write(d.cluster.log_report(60) + "\n")
                    raise
            log(f"{d.mode}: {what} done")

    def campaigns(d: Deployment) -> Awaitable[dict[str, Any]]:
        return campaign_phase(d.cluster, d.probe, scripts=plan.scripts, latency_ms=plan.latency_ms)

    def ingest(d: Deployment) -> Awaitable[dict[str, Any]]:
        urls = [s.url for s in d.cluster.serves]
        return ingest_phase(d.cluster, d.probe, d.targets, serves=urls, senders=plan.senders,
                            events=plan.events)  # fmt: skip

    await each("idle", lambda d: idle_phase(d.probe, plan.idle_sec))
    await each("campaigns", campaigns)
    await each("ingest", ingest)
    scaleout = [d for d in deployments if d.mode == "scaleout"]
    for d in scaleout:
        async with d.awake():
            await (await d.cluster.add_worker()).wait_ready()
            d.phases.append(await campaigns(d))
            log(f"scale-out, 2 workers: {d.phases[-1]['campaigns_per_min']} campaigns/min")
            await (await d.cluster.add_serve()).wait_ready()
            d.phases.append(await ingest(d))
            if plan.serve_workers_phase:
                d.phases.append(await serve_workers_2(d.cluster, d.probe, d.targets, plan))
    for senders in plan.sweep:

        async def level(d: Deployment, senders: int = senders) -> dict[str, Any]:
            urls = [s.url for s in d.cluster.serves]
            return await ingest_phase(d.cluster, d.probe, d.targets, serves=urls, senders=senders,
                                      sec=plan.sweep_sec, label="sweep")  # fmt: skip

        await each(f"sweep {senders}", level)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, one line each, with the load average they were taken at."""
    lines: dict[str, Any] = {}
    for mode, data in results.items():
        for phase in data["phases"]:
            load_at = phase["load_average_before"][0]
            if phase["phase"] == "campaigns":
                key = f"{mode}_campaigns_api{phase['api_processes']}_workers{phase['worker_processes']}"
                if mode == "embedded":
                    key = "embedded_campaigns"
                lines[key] = {"campaigns_per_min": phase["campaigns_per_min"],
                              "load_average": load_at}  # fmt: skip
            elif phase["phase"].startswith("ingest"):
                suffix = "_serve_workers_2" if phase["phase"] != "ingest" else ""
                key = f"{mode}_ingest_api{phase['api_processes']}{suffix}"
                lines[key] = {"events_per_sec": phase["events_per_sec"],
                              "p99_ms": phase["latency_ms"]["p99"], "load_average": load_at}  # fmt: skip
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes in all")
    parser.add_argument("--modes", default="embedded,scaleout")
    parser.add_argument("--campaigns", type=int, help="agent projects, one campaign each")
    parser.add_argument("--scripts", help="comma-separated script ids (default: all 21)")
    parser.add_argument("--latency-ms", type=int, default=100, help="demo agents' reply latency")
    parser.add_argument("--events", type=int, help="events per ingest phase")
    parser.add_argument(
        "--senders", type=int, default=16, help="concurrent senders per ingest phase"
    )
    parser.add_argument("--sweep", help="sender counts of the concurrency sweep, e.g. 8,32,128")
    parser.add_argument("--sweep-sec", type=float, help="seconds per sweep level")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--fast-sidecars", action="store_true",
                        help="sidecars as the reliability harness runs them (1 s heartbeat, "
                             "200 ms flush) instead of the product's defaults (15 s, 500 ms)")  # fmt: skip
    args = parser.parse_args()
    quick = args.quick
    plan = Plan(
        campaigns=args.campaigns or (8 if quick else 24),
        scripts=(args.scripts.split(",") if args.scripts else ALL_SCRIPTS[:5] if quick else ALL_SCRIPTS),
        latency_ms=args.latency_ms,
        events=args.events or (6_000 if quick else 40_000),
        senders=args.senders,
        sweep=[int(n) for n in (args.sweep or ("8,64" if quick else "8,16,32,64,128,256,512")).split(",")],
        sweep_sec=args.sweep_sec or (3 if quick else 10),
        idle_sec=3 if quick else 10,
        serve_workers_phase=not quick,
        fast_sidecars=args.fast_sidecars,
    )  # fmt: skip
    started = time.time()
    out: dict[str, Any] = {
        "bench": "scaleout",
        "cpus": os.cpu_count(),
        "load_average_at_start": load(),
        "plan": {**plan.__dict__, "quick": quick},
        "results": {},
    }
    modes = args.modes.split(",")
    unknown = set(modes) - {"embedded", "scaleout"}
    if unknown:
        parser.error(f"--modes: unknown {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="scaleout-bench-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            deployments = [await bring_up(mode, Path(tmp), plan, stack) for mode in modes]
            await measure(deployments, plan)
    out["results"] = {
        d.mode: {"store": "sqlite" if d.mode == "embedded" else "postgresql",
                 "queue": "in-process" if d.mode == "embedded" else "redis",
                 "phases": d.phases}
        for d in deployments
    }  # fmt: skip
    out["load_average_at_end"] = load()
    out["duration_sec"] = round(time.time() - started, 1)
    out["summary"] = summary(out["results"])
    text = json.dumps(out, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
