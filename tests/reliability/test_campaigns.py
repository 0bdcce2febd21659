"""Scale-out item 1: twenty campaigns at once across five orgs, two API and two worker
processes on PostgreSQL and Redis, real demo agents behind real sidecars.

Every campaign completes, both workers take part, and each project's findings
fall in exactly the categories the single-process engine finds for the same
agent (the table of tests/e2e/test_campaign_matrix.py): concurrency and the
process boundary change nothing about the verdicts.
"""

from __future__ import annotations

import uuid

import pytest

from tests.reliability import checks
from tests.reliability.cluster import Cluster

pytestmark = pytest.mark.reliability


async def test_twenty_campaigns_at_once_match_the_single_process_engine(cluster: Cluster) -> None:
    assert len(cluster.projects) == 20 and len({p.org.id for p in cluster.projects}) == 5
    claimed_before = checks.claims(cluster)
    runs = await cluster.start_campaigns(cluster.projects)
    final = await cluster.wait_final(runs)

    not_completed = {runs[r].profile: (v.status.value, v.failure_reason)
                     for r, v in final.items() if v.status.value != "completed"}  # fmt: skip
    assert not not_completed
    found = await checks.categories(cluster, runs)
    wrong = {f"{p.sidecar.name} {p.profile}":
             {"expected": sorted(p.expected), "found": sorted(found[r])}
             for r, p in runs.items() if found[r] != p.expected}  # fmt: skip
    assert not wrong
    claimed = checks.claims(cluster)
    assert all(claimed[name] > claimed_before.get(name, 0) for name in claimed), claimed
    assert sum(claimed.values()) - sum(claimed_before.values()) >= len(runs)
    # A leak of a minted canary is proven, not guessed (as in the single-process matrix).
    canary_leaks = [r for r, p in runs.items() if p.profile == "leak-key" and p.secret_is_canary]
    assert canary_leaks
    for run_id in canary_leaks:
        rows = await cluster.sql(
            "SELECT status, confidence, score FROM findings "
            "WHERE run_id = :r AND script_id = 'S1'", r=uuid.UUID(run_id),
        )  # fmt: skip
        assert [tuple(row) for row in rows] == [("confirmed", 1.0, 100)]
    assert await checks.run_problems(cluster, runs) == []
    assert await checks.duplicate_problems(cluster) == []
    assert await checks.sidecar_drops(cluster) == {}
