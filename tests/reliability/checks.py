"""What must hold in the cluster's database whatever fault was injected.

Each check returns human-readable problems (empty when all is well), so a
scenario can assert all of them at once and a failure names every broken run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from tests.reliability.cluster import FINAL, Cluster


def _ids(run_ids: Iterable[str]) -> list[uuid.UUID]:
    return [uuid.UUID(r) for r in run_ids]


async def run_problems(cluster: Cluster, run_ids: Iterable[str]) -> list[str]:
    """Runs final (a failed one with a reason); events and stream messages gap-free 1..last."""
    ids = _ids(run_ids)
    problems: list[str] = []
    for run_id, status, reason in await cluster.sql(
        "SELECT id, status, failure_reason FROM runs WHERE id = ANY(:ids)", ids=ids
    ):
        if status not in FINAL:
            problems.append(f"run {run_id} is still {status}")
        if status == "failed" and not (reason or "").strip():
            problems.append(f"run {run_id} failed without a reason")
    for table, last in (("events", "last_seq"), ("stream_messages", "last_stream_seq")):
        rows = await cluster.sql(
            f"SELECT r.id, r.{last}, count(x.seq), count(DISTINCT x.seq), min(x.seq), max(x.seq) "
            f"FROM runs r LEFT JOIN {table} x ON x.run_id = r.id "
            f"WHERE r.id = ANY(:ids) GROUP BY r.id, r.{last}",
            ids=ids,
        )
        for run_id, top, count, distinct, low, high in rows:
            if not (count == distinct == top and (top == 0 or (low, high) == (1, top))):
                problems.append(
                    f"run {run_id} {table}: {count} rows, {distinct} distinct seqs in "
                    f"[{low}, {high}], expected exactly 1..{top}"
                )
    return problems


async def duplicate_problems(cluster: Cluster) -> list[str]:
    """No finding twice per run, no ingest batch twice, no sidecar event stored twice."""
    problems = [
        f"run {run_id}: finding {fingerprint[:12]} stored {n} times"
        for run_id, fingerprint, n in await cluster.sql(
            "SELECT run_id, fingerprint, count(*) FROM findings "
            "GROUP BY run_id, fingerprint HAVING count(*) > 1"
        )
    ]
    problems += [
        f"project {project_id}: ingest batch {batch_id} stored {n} times"
        for project_id, batch_id, n in await cluster.sql(
            "SELECT project_id, batch_id, count(*) FROM ingest_batches "
            "GROUP BY project_id, batch_id HAVING count(*) > 1"
        )
    ]
    # Every batch's accepted count is exactly the sidecar events stored for the project.
    problems += [
        f"project {project_id}: batches accepted {accepted} events, {stored} are stored"
        for project_id, accepted, stored in await cluster.sql(
            "SELECT p.id, coalesce((SELECT sum(b.accepted) FROM ingest_batches b "
            "WHERE b.project_id = p.id), 0), (SELECT count(*) FROM events e "
            "WHERE e.project_id = p.id AND e.sidecar_token_id IS NOT NULL) FROM projects p"
        )
        if accepted != stored
    ]
    return problems


async def sidecar_drops(cluster: Cluster) -> dict[str, object]:
    """Events any sidecar process reports as finally dropped (by its last heartbeat), by
    project and process (replicas and restarts of one token have rows of their own)."""
    rows = await cluster.sql("SELECT project_id, instance_id, counters FROM sidecar_status")
    return {
        f"{p}/{i}": c.get("dropped") for p, i, c in rows if isinstance(c, dict) and c.get("dropped")
    }


async def categories(cluster: Cluster, run_ids: Iterable[str]) -> dict[str, set[str]]:
    """The finding categories of each run."""
    found: dict[str, set[str]] = {r: set() for r in run_ids}
    for run_id, category in await cluster.sql(
        "SELECT DISTINCT run_id, category FROM findings WHERE run_id = ANY(:ids)",
        ids=_ids(found),
    ):
        found[str(run_id)].add(category)
    return found


def claims(cluster: Cluster) -> dict[str, int]:
    """How many run claims each worker (dead ones included) logged."""
    return {proc.name: proc.log.read_text(errors="replace").count(" claimed by ")
            for proc in [*(w.proc for w in cluster.workers), *cluster.retired]}  # fmt: skip
