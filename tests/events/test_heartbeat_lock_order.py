"""A heartbeat takes its sidecar's rows in the order ingest takes them: the token row,
then its status row. In the other order a heartbeat and a batch of the same sidecar
deadlocked on PostgreSQL (one of them answered 500) under scale-out load.

PostgreSQL only, on a database of its own: SQLite writers take one database
lock up front, so they cannot deadlock this way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from cogumi.db.engine import make_engine, make_sessionmaker
from cogumi.db.migrate import upgrade
from cogumi.events.models import SidecarStatus
from cogumi.events.schemas import HeartbeatIn
from cogumi.events.service import record_heartbeat
from cogumi.projects.models import Project, SidecarToken
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


async def test_a_heartbeat_locks_the_token_before_its_status(pg_url: str) -> None:
    engine = make_engine(pg_url)
    sessionmaker = make_sessionmaker(engine)
    org_id, project_id, token_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with sessionmaker() as session, session.begin():
            session.add(Organization(id=org_id, name="lock-order"))
            await session.flush()
            session.add(Project(id=project_id, org_id=org_id, name="lock-order"))
            await session.flush()
            session.add(SidecarToken(id=token_id, org_id=org_id, project_id=project_id,
                                     prefix=uuid.uuid4().hex[:12], token_hash="0" * 64))  # fmt: skip
            await session.flush()
            session.add(SidecarStatus(token_id=token_id, org_id=org_id, project_id=project_id))

        async def heartbeat() -> None:
            async with sessionmaker() as session, session.begin():
                token = await session.get(SidecarToken, token_id)
                assert token is not None
                await record_heartbeat(session, token=token, project_id=project_id,
                                       heartbeat=HeartbeatIn(sidecar_version="t"))  # fmt: skip

        async with engine.connect() as batch:  # an ingest batch holding the token row
            held = await batch.begin()
            await batch.execute(
                text("UPDATE sidecar_tokens SET events_accepted = events_accepted + 1 "
                     "WHERE id = :id"), {"id": token_id},
            )  # fmt: skip
            waiting = asyncio.ensure_future(heartbeat())
            await asyncio.sleep(0.5)
            assert not waiting.done(), waiting.exception() if waiting.done() else None
            # The heartbeat waits for the token row without holding the status row, so
            # the batch can still take the status row next: no deadlock.
            async with engine.connect() as probe, probe.begin():
                await probe.execute(
                    text("SELECT 1 FROM sidecar_status WHERE token_id = :id FOR UPDATE NOWAIT"),
                    {"id": token_id},
                )
            await held.commit()
        await asyncio.wait_for(waiting, timeout=10)
        async with sessionmaker() as session:
            status = await session.get(SidecarStatus, (token_id, ""))
            token = await session.get(SidecarToken, token_id)
        assert status is not None and status.last_heartbeat_at is not None
        assert token is not None and token.last_seen_at is not None
        assert token.events_accepted == 1
    finally:
        await engine.dispose()
