"""Scale-out item 2: ``kill -9`` of a worker that holds runs.

Within the lease (plus the reaper's interval and a margin for a loaded
machine) no run is left in the dead worker's name; every run still ends
``completed`` (or ``failed`` with a readable reason), none stays ``running``;
nothing is stored twice (findings per run, event and stream seqs, ingest
batches); and the retried runs find what an uninterrupted run finds.

The campaigns are the shorter fault-scenario ones (``FAULT_DROPPED`` categories
left out, memory poisoning among them: a retried run with the same id would
meet an agent that the lost attempt already poisoned).
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.reliability import checks
from tests.reliability.cluster import (
    FAULT_DROPPED,
    LEASE_SEC,
    REAPER_INTERVAL_SEC,
    Cluster,
    scripts_without,
    until,
)

pytestmark = pytest.mark.reliability

MARGIN_SEC = 15  # a loaded 2-core machine may be slow to notice; the rule is the lease


async def test_killing_a_worker_mid_run_loses_nothing(cluster: Cluster) -> None:
    scripts, dropped = scripts_without(FAULT_DROPPED), FAULT_DROPPED
    projects = cluster.projects[:10]
    runs = await cluster.start_campaigns(projects, scripts=scripts)
    victim = cluster.workers[0]

    async def victim_is_busy() -> bool:
        """The victim holds at least two runs that already have results."""
        held = [
            r for r, run in (await cluster.statuses(runs)).items() if victim.holds(run.lease_owner)
        ]
        with_results = await cluster.sql(
            "SELECT count(DISTINCT run_id) FROM script_results WHERE run_id = ANY(:ids)",
            ids=[uuid.UUID(r) for r in held],
        )
        return len(held) >= 2 and with_results[0][0] >= 2

    await until(victim_is_busy, timeout=120, what=f"{victim.proc.name} to hold two runs mid-way")
    held = {r for r, run in (await cluster.statuses(runs)).items() if victim.holds(run.lease_owner)}
    await cluster.kill_worker(victim)
    killed_at = time.monotonic()

    async def released() -> bool:
        return not any(victim.holds(r.lease_owner) for r in (await cluster.statuses(runs)).values())

    await until(released, timeout=LEASE_SEC + REAPER_INTERVAL_SEC + MARGIN_SEC,
                what="the dead worker's runs to be taken back")  # fmt: skip
    taken_back_after = time.monotonic() - killed_at
    replacement = await cluster.add_worker()  # as an orchestrator would restart it
    await replacement.wait_ready()
    final = await cluster.wait_final(runs)

    assert {v.status.value for v in final.values()} <= {"completed", "failed"}
    failed = {r: v.failure_reason for r, v in final.items() if v.status.value == "failed"}
    assert all(reason and reason.strip() for reason in failed.values()), failed
    assert not failed, failed  # three attempts are plenty for one lost worker
    assert all(final[r].attempts >= 2 for r in held), {r: final[r].attempts for r in held}
    assert taken_back_after < LEASE_SEC + REAPER_INTERVAL_SEC + MARGIN_SEC
    assert await checks.run_problems(cluster, runs) == []
    assert await checks.duplicate_problems(cluster) == []
    found = await checks.categories(cluster, runs)
    wrong = {f"{p.sidecar.name} {p.profile} (retried: {r in held})":
             {"expected": sorted(p.expected - dropped), "found": sorted(found[r])}
             for r, p in runs.items() if found[r] != p.expected - dropped}  # fmt: skip
    assert not wrong
