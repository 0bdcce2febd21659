"""Groups claim their batches in ``batch_id`` order, so two groups holding the same
batches (a retried batch that reached two ``serve`` processes) wait on each other
in one order and never deadlock.

PostgreSQL only, on a database of its own: SQLite writers take one database lock
up front, so they cannot deadlock this way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import pytest

from cogumi.db.engine import make_engine, make_sessionmaker
from cogumi.db.migrate import upgrade
from cogumi.events.pg_writer import CLAIM_MANY as _PG_CLAIM_MANY
from cogumi.projects.models import Project
from cogumi.tenancy.models import Organization
from tests.conftest import _run_outside_loop
from tests.databases import create_pg_database, drop_pg_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        _run_outside_loop(upgrade, url)
        yield url
    finally:
        drop_pg_database(url)


async def claim(conn: asyncpg.Connection, org_id: uuid.UUID, project_id: uuid.UUID, batch_ids: list[str]) -> list[str]:  # fmt: skip
    """The claim a group makes, for ``batch_ids`` in the order they arrived."""
    rows = await conn.fetch(
        _PG_CLAIM_MANY, [uuid.uuid4() for _ in batch_ids], org_id, project_id, batch_ids,
        [1] * len(batch_ids), [datetime.now(UTC)] * len(batch_ids),
    )  # fmt: skip
    return sorted(str(row[0]) for row in rows)


async def test_a_group_claims_its_batches_in_batch_id_order(pg_url: str) -> None:
    engine = make_engine(pg_url)
    org_id, project_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            session.add(Organization(id=org_id, name="claim-order"))
            await session.flush()
            session.add(Project(id=project_id, org_id=org_id, name="claim-order"))
    finally:
        await engine.dispose()
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        one = first.transaction()
        await one.start()
        assert await claim(first, org_id, project_id, ["x"]) == ["x"]
        two = second.transaction()
        await two.start()
        # A group whose batches arrived y, then x: it waits for x, without holding y.
        waiting = asyncio.ensure_future(claim(second, org_id, project_id, ["y", "x"]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await first.execute("SET LOCAL lock_timeout = '500ms'")
        # So the first group can still claim y (it would wait for the second, which
        # waits for it, if y had been claimed first: a deadlock).
        assert await claim(first, org_id, project_id, ["y"]) == ["y"]
        await one.commit()
        assert await asyncio.wait_for(waiting, 10) == []  # both stored by the first
        await two.commit()
        count = await first.fetchval(
            "SELECT count(*) FROM ingest_batches WHERE project_id = $1", project_id
        )
        assert count == 2
    finally:
        await first.close()
        await second.close()
