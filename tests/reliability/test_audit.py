"""Scale-out item 7, after every other scenario has run on the cluster (the package's
conftest orders it last): a ``pg_dump`` of the cluster's whole database holds no
raw secret, and no row of one org references a row of another.

Secrets looked for: every agent's planted key, every canary minted through
the API, every sidecar token, API key and session token handed out, each as
a whole and as its middle part (so a value cut short or embedded in a
preview is caught too). The same goes for the logs of the serve, worker and
sidecar processes. The check is not vacuous: the planted keys that leaked in
campaigns are in the dump as their sha256, so they did reach the database.

Cross-org references are found generically: every foreign key between two
tables that both carry ``org_id`` (read from the SQLAlchemy metadata) is
joined and rows whose org ids differ are counted; so are the evidence event
ids that findings and story steps keep in JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil

import pytest
from sqlalchemy import Table

import cogumi.db.models  # noqa: F401 - registers every table
from cogumi.db.base import Base
from tests.reliability.cluster import Cluster, secrets_of

pytestmark = pytest.mark.reliability


def _needles(secret: str) -> list[str]:
    """The secret, and for product tokens (``cg?_<prefix>_<secret>``) their secret part,
    else its middle half: stored prefixes and previews show the ends, never the middle."""
    if secret.startswith(("cgk_", "cgs_")) and secret.count("_") >= 2:
        return [secret, secret.split("_", 2)[2]]
    quarter = len(secret) // 4
    return [secret, secret[quarter : len(secret) - quarter]] if len(secret) >= 16 else [secret]


async def _pg_dump(cluster: Cluster) -> str:
    url = cluster.database_url.replace("postgresql+asyncpg://", "postgresql://")
    dump = await asyncio.create_subprocess_exec(
        shutil.which("pg_dump") or "pg_dump", "--data-only", "--no-owner", f"--dbname={url}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await dump.communicate()
    assert dump.returncode == 0, err.decode()
    return out.decode()


def org_foreign_keys() -> list[tuple[str, str, str, str]]:
    """(child table, child column, parent table, parent column) for every foreign key
    between two tables that both carry ``org_id`` (the org_id column itself excluded)."""
    pairs = []
    for table in Base.metadata.sorted_tables:
        if "org_id" not in table.columns:
            continue
        for fk in table.foreign_keys:
            parent = fk.column.table
            if (
                isinstance(parent, Table)
                and "org_id" in parent.columns
                and fk.parent.name != "org_id"
            ):
                pairs.append((table.name, fk.parent.name, parent.name, fk.column.name))
    return sorted(pairs)


async def _ensure_history(cluster: Cluster) -> None:
    """Alone (no other scenario ran), the audit first runs a campaign on every project."""
    if not await cluster.sql("SELECT 1 FROM runs WHERE status = 'completed' LIMIT 1"):
        await cluster.wait_final(await cluster.start_campaigns(cluster.projects))


async def test_no_raw_secret_and_no_cross_org_reference(cluster: Cluster) -> None:
    await _ensure_history(cluster)
    dump = await _pg_dump(cluster)
    secrets = secrets_of(cluster)
    assert len(secrets) >= 5 * 3 + 20 * 5
    in_dump = {label for label, value in secrets.items() if any(n in dump for n in _needles(value))}
    assert not in_dump
    logs = {proc.name: proc.log.read_text(errors="replace") for proc in cluster.procs()
            if proc.name.startswith(("serve", "worker", "sidecar"))}  # fmt: skip
    in_logs = {f"{label} in {name}" for name, text in logs.items()
               for label, value in secrets.items()
               if any(n in text for n in _needles(value))}  # fmt: skip
    assert not in_logs
    # Not vacuous: leaked keys reached the database, hashed.
    hashed = [p.sidecar.name for p in cluster.projects
              if hashlib.sha256(p.secret.encode()).hexdigest() in dump]  # fmt: skip
    leaky = [p.sidecar.name for p in cluster.projects if p.profile in {"leak-key", "vulnerable"}]
    assert set(leaky) <= set(hashed), (leaky, hashed)

    pairs = org_foreign_keys()
    assert len(pairs) >= 15, pairs
    crossing: dict[str, int] = {}
    joined = 0
    for child, column, parent, key in pairs:
        rows = await cluster.sql(
            f'SELECT count(*), count(*) FILTER (WHERE c.org_id <> p.org_id) FROM "{child}" c '
            f'JOIN "{parent}" p ON c."{column}" = p."{key}"'
        )
        total, different = rows[0]
        joined += total
        if different:
            crossing[f"{child}.{column} -> {parent}.{key}"] = different
    # Evidence is referenced by id inside JSON: each id is an event of the same org.
    for table in ("findings", "story_steps"):
        rows = await cluster.sql(
            f"SELECT count(*), count(*) FILTER (WHERE e.org_id IS DISTINCT FROM t.org_id) "
            f"FROM {table} t CROSS JOIN LATERAL json_array_elements_text("
            f"t.evidence_event_ids::json) AS ref(id) LEFT JOIN events e ON e.id = ref.id::uuid"
        )
        total, different = rows[0]
        joined += total
        if different:
            crossing[f"{table}.evidence_event_ids -> events"] = different
    assert crossing == {}
    assert joined > 1000  # the references were there to check
