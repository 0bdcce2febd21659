"""Scale-out item 4: the cluster's Redis stops for 10 s during campaigns, then starts again
on the same port, empty (no persistence), and nobody touches the processes.

While it is down: readiness names the queue and the live bus, sign-in and
sidecar ingest keep working (rate limits count per process), and campaigns
started meanwhile are accepted (their jobs cannot be sent). Afterwards
readiness is green again, each serve's live bus hears wake-ups again, each
worker's queue listener said once that Redis was lost and once that it is
back, every run (those running through the outage and those started during
it, whose jobs the reaper re-sends) completes with the same findings as
without the outage (the shorter fault-scenario campaigns, see
``FAULT_DROPPED``), and nothing is missing or doubled in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.events import stream
from cogumi.events.bus import RedisBus
from cogumi.runs.models import Run, RunStatus
from tests.events.test_stream import sse_items
from tests.factories import PASSWORD
from tests.reliability import checks
from tests.reliability.cluster import FAULT_DROPPED, Cluster, Project, scripts_without, until

pytestmark = pytest.mark.reliability

OUTAGE_SEC = 10


async def _mid_campaign(cluster: Cluster, runs: dict[str, Project], count: int) -> bool:
    rows = await cluster.sql(
        "SELECT count(DISTINCT r.id) FROM runs r JOIN script_results s ON s.run_id = r.id "
        "WHERE r.id = ANY(:ids) AND r.status = 'running'",
        ids=[uuid.UUID(r) for r in runs],
    )
    return bool(rows[0][0] >= count)


async def _readiness(cluster: Cluster, serve: int) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return await client.get(f"{cluster.url(serve)}/api/health/ready")


async def _down_named(cluster: Cluster, serve: int) -> bool:
    response = await _readiness(cluster, serve)
    return response.status_code == 503 and {"queue", "live_bus"} <= set(response.json()["down"])


async def _ready(cluster: Cluster, serve: int) -> bool:
    return (await _readiness(cluster, serve)).status_code == 200


@contextlib.asynccontextmanager
async def _probe_run(cluster: Cluster, project: Project) -> AsyncIterator[uuid.UUID]:
    """A running run no worker executes (its lease far away), so its stream stays open."""
    run_id = uuid.uuid4()
    async with transaction(cluster.sessionmaker) as session:
        session.add(Run(id=run_id, org_id=project.org.id, project_id=uuid.UUID(project.id),
                        status=RunStatus.running, started_at=utcnow(), config={},
                        lease_owner="reliability-probe",
                        lease_expires_at=utcnow() + timedelta(hours=1)))  # fmt: skip
    try:
        yield run_id
    finally:
        async with transaction(cluster.sessionmaker) as session:
            run = await session.get(Run, run_id)
            assert run is not None
            run.status, run.ended_at, run.lease_owner = RunStatus.canceled, utcnow(), None


async def _live_wakeup(cluster: Cluster, serve: int, project: Project, run_id: uuid.UUID) -> int:
    """Publish through Redis from this process until one message reaches ``serve``'s stream
    within a second (far below the stream's 15 s re-read); returns how many it took."""
    bus = RedisBus(cluster.redis_url, prefix="cogumi:")
    await bus.start()
    url = f"{cluster.url(serve)}/api/runs/{run_id}/stream"
    arrived: asyncio.Queue[str] = asyncio.Queue()
    client = project.org.client
    try:
        async with client.stream("GET", url, timeout=httpx.Timeout(30, read=None)) as response:
            assert response.status_code == 200

            async def read() -> None:
                async for item in sse_items(response):
                    await arrived.put(item["id"])

            reader = asyncio.ensure_future(read())
            try:
                deadline = time.monotonic() + 30
                for attempt in range(1, 1000):
                    assert time.monotonic() < deadline, f"serve-{serve} heard no wake-up"
                    async with transaction(cluster.sessionmaker) as session:
                        seq = await stream.publish(session, bus=bus, org_id=project.org.id,
                                                   run_id=run_id, kind="story.step.created",
                                                   data={"probe": attempt})  # fmt: skip
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            while await arrived.get() != str(seq):
                                pass
                            return attempt
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    finally:
        await bus.close()
    raise AssertionError("unreachable")


async def test_redis_outage_is_survived_without_operator_action(cluster: Cluster) -> None:
    campaigns = cluster.projects[10:]
    late, spare = cluster.projects[0:2], cluster.projects[2]
    scripts = scripts_without(FAULT_DROPPED)
    runs = await cluster.start_campaigns(campaigns, scripts=scripts)
    await until(lambda: _mid_campaign(cluster, runs, 4), timeout=120, what="campaigns mid-way")
    log_offsets = {w.proc.name: w.proc.log.stat().st_size for w in cluster.workers}

    await cluster.stop_redis()
    stopped_at = time.monotonic()
    for serve in range(len(cluster.serves)):
        await until(lambda s=serve: _down_named(cluster, s), timeout=15,
                    what=f"serve-{serve} readiness to name queue and live_bus")  # fmt: skip
    runs |= await cluster.start_campaigns(late, scripts=scripts)  # accepted; no job sent yet
    owner = cluster.orgs[0]
    async with httpx.AsyncClient(trust_env=False, timeout=30) as web:
        login = await web.post(f"{cluster.url(1)}/api/auth/login",
                               json={"email": owner.email, "password": PASSWORD})  # fmt: skip
    assert login.status_code == 200, login.text

    # Traffic through a sidecar now is stored now (the sidecar answers the sink itself).
    probe_path = f"/outage-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(proxy=f"http://127.0.0.1:{spare.sidecar_port}",
                                 trust_env=False, timeout=10) as agent:  # fmt: skip
        assert (
            await agent.post(f"http://attacker-sink.local{probe_path}", content=b"x")
        ).is_success

    async def ingested_meanwhile() -> bool:
        rows = await cluster.sql("SELECT count(*) FROM events WHERE dest_path = :p", p=probe_path)
        return bool(rows[0][0])

    await until(ingested_meanwhile, timeout=OUTAGE_SEC, what="ingest while Redis is down")
    await asyncio.sleep(max(0.0, OUTAGE_SEC - (time.monotonic() - stopped_at)))
    await cluster.start_redis()

    for serve in range(len(cluster.serves)):
        await until(lambda s=serve: _ready(cluster, s), timeout=30,
                    what=f"serve-{serve} to be ready again")  # fmt: skip
    async with _probe_run(cluster, spare) as probe:
        for serve in range(len(cluster.serves)):
            await _live_wakeup(cluster, serve, spare, probe)
    final = await cluster.wait_final(runs)

    assert {r: (v.status.value, v.failure_reason) for r, v in final.items()
            if v.status.value != "completed"} == {}  # fmt: skip
    assert await checks.run_problems(cluster, runs) == []
    assert await checks.duplicate_problems(cluster) == []
    assert await checks.sidecar_drops(cluster) == {}
    for worker in cluster.workers:
        with worker.proc.log.open("rb") as log:
            log.seek(log_offsets[worker.proc.name])
            said = log.read().decode(errors="replace")
        lost, back = said.count("run queue lost Redis"), said.count("run queue reconnected")
        assert 1 <= lost <= 2 and lost == back, (worker.proc.name, lost, back)  # no retry storm
    found = await checks.categories(cluster, runs)
    wrong = {f"{p.sidecar.name} {p.profile}":
             {"expected": sorted(p.expected - FAULT_DROPPED), "found": sorted(found[r])}
             for r, p in runs.items() if found[r] != p.expected - FAULT_DROPPED}  # fmt: skip
    assert not wrong
