"""Campaign wall time and the engine's own overhead per turn, printed as JSON.

Runs the real campaign runner (embedded SQLite store) against a real
`cogumi demo-agent` process with a fixed reply latency, at intensity
low/med/high. Overhead per turn = (wall time - time spent waiting for the
agent) / turns: what the engine itself costs (recording, redaction, variant
store, evaluation, story, live stream, and the embedded worker's cancel check
before every turn). No sidecar is connected, so evidence
windows close at once; with a sidecar a turn also waits for its watermark.

Wall-clock overhead includes waiting for a CPU on a busy machine; the engine's
own CPU time per turn (this process, all threads, minus the CPU spent inside
the agent calls) is printed beside it. ``--repeat N`` runs every intensity N
times and adds the medians.

The load average before and after is printed too: figures taken while the
machine is busy are not comparable with quiet ones. ``--profile FILE`` writes a
cProfile of the campaigns themselves (inspect with ``python -m pstats FILE``).

    python bench/campaign_bench.py [--latency-ms 50] [--scripts S1,...] [--quick] [--repeat N]
                                   [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from cogumi.config import Settings
from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.db.migrate import upgrade
from cogumi.engine import runner
from cogumi.events.bus import MemoryBus
from cogumi.events.models import Event
from cogumi.projects.models import Project
from cogumi.runs.models import Run, RunStatus
from cogumi.runs.worker import Attempt, RunWorker
from cogumi.tenancy.models import Organization

ALL = [f"S{i}" for i in range(1, 6)] + [f"P{i:02d}" for i in range(1, 17)]
WORKER = "campaign-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_agent(port: int, latency_ms: int) -> subprocess.Popen[bytes]:
    cogumi = str(Path(sys.executable).parent / "cogumi")
    proc = subprocess.Popen(
        [cogumi, "demo-agent", "--listen", f"127.0.0.1:{port}", "--profile", "hardened",
         "--latency-ms", str(latency_ms), "--log-level", "warning"],
        env={**os.environ, "HTTP_PROXY": "", "http_proxy": ""}, stdout=sys.stderr,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("demo agent did not start")


async def one_campaign(sm: Any, org_id: uuid.UUID, project_id: uuid.UUID, url: str,
                       scripts: list[str], intensity: str, settings: Settings,
                       profiler: cProfile.Profile | None = None) -> dict[str, Any]:  # fmt: skip
    run_id = uuid.uuid4()
    config = {"scripts": scripts, "intensity": intensity, "styles": [],
              "project": {"agent_test_url": url, "adapter": {"kind": "native"},
                          "sink_domains": ["attacker-sink.local"], "tool_domains": [], "sensitive_paths": ["/admin"]}}  # fmt: skip
    async with transaction(sm) as session:
        session.add(
            Run(
                id=run_id,
                org_id=org_id,
                project_id=project_id,
                status=RunStatus.running,
                config=config,
                lease_owner=WORKER,
            )
        )
    bus = MemoryBus()
    # The embedded worker's own per-turn check (cancel, lease, duration cap, event quota).
    worker = RunWorker(sessionmaker=sm, settings=settings, bus=bus, queue=None, owner=WORKER)  # type: ignore[arg-type]
    should_stop = worker.should_stop_for(Attempt(run_id=run_id, deadline=time.monotonic() + 900))
    campaign = await runner.load_campaign(
        sessionmaker=sm, settings=settings, bus=bus, run_id=run_id, should_stop=should_stop
    )
    waited = waited_cpu = 0.0
    send = campaign.adapter.send

    async def timed_send(**kwargs: Any) -> Any:
        nonlocal waited, waited_cpu
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            return await send(**kwargs)
        finally:
            waited += time.perf_counter() - started
            waited_cpu += time.process_time() - started_cpu

    campaign.adapter.send = timed_send  # type: ignore[method-assign]
    if profiler is not None:
        profiler.enable()
    started, started_cpu = time.perf_counter(), time.process_time()
    await campaign.execute([campaign.library.scripts[script_id] for script_id in scripts])
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if profiler is not None:
        profiler.disable()
    await campaign.aclose()
    async with transaction(sm) as session:
        (await session.get(Run, run_id)).status = RunStatus.completed  # type: ignore[union-attr]
    async with sm() as session:
        messages = await session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.run_id == run_id, Event.type == "agent.message")
        )
    turns = int(messages or 0) // 2
    return {
        "intensity": intensity,
        "scripts": len(scripts),
        "turns": turns,
        "wall_sec": round(wall, 3),
        "agent_wait_sec": round(waited, 3),
        "overhead_ms_per_turn": round((wall - waited) / turns * 1000, 2) if turns else None,
        "engine_cpu_ms_per_turn": round((cpu - waited_cpu) / turns * 1000, 2) if turns else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--scripts", default=",".join(ALL))
    parser.add_argument("--quick", action="store_true", help="S1-S5 at low and med only")
    parser.add_argument("--repeat", type=int, default=1, help="campaigns per intensity")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the campaigns here")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.profile else None
    load_before = os.getloadavg()
    scripts = ALL[:5] if args.quick else args.scripts.split(",")
    intensities = ["low", "med"] if args.quick else ["low", "med", "high"]
    with tempfile.TemporaryDirectory() as tmp:
        url_db = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await asyncio.to_thread(upgrade, url_db)
        settings = Settings(_env_file=None, database_url=url_db, data_dir=Path(tmp))
        engine = make_engine(url_db)
        sm = make_sessionmaker(engine)
        org_id, project_id = uuid.uuid4(), uuid.uuid4()
        async with transaction(sm) as session:
            session.add(Organization(id=org_id, name="bench"))
            await session.flush()
            session.add(Project(id=project_id, org_id=org_id, name="bench"))
        port = free_port()
        agent = start_agent(port, args.latency_ms)
        try:
            results = [
                await one_campaign(
                    sm, org_id, project_id, f"http://127.0.0.1:{port}", scripts, i, settings,
                    profiler,
                )
                for _ in range(args.repeat)
                for i in intensities
            ]  # fmt: skip
        finally:
            agent.terminate()
            agent.wait(timeout=10)
            await engine.dispose()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    load = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps({"bench": "campaign", "agent_latency_ms": args.latency_ms, "store": "sqlite",
                      "load_average": load, "results": results,
                      "medians": medians(results, intensities),
                      "target_overhead_ms_per_turn": 10}, indent=2))  # fmt: skip


def medians(results: list[dict[str, Any]], intensities: list[str]) -> dict[str, Any]:
    """Median wall overhead and engine CPU per turn, by intensity."""
    out: dict[str, Any] = {}
    for intensity in intensities:
        mine = [r for r in results if r["intensity"] == intensity and r["turns"]]
        out[intensity] = {
            key: statistics.median(r[key] for r in mine) if mine else None
            for key in ("overhead_ms_per_turn", "engine_cpu_ms_per_turn")
        }
    return out


if __name__ == "__main__":
    asyncio.run(main())
