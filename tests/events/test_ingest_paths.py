"""Ingest's two write paths: the driver-level fast path and the general (SQLAlchemy)
one store the same rows; the cases the fast path hands over; a lock held elsewhere
makes a batch wait without stalling the server."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.errors import Forbidden
from cogumi.events import ingest, ingest_fast
from cogumi.events.models import Event, IngestBatch
from cogumi.events.schemas import MAX_EVENTS_PER_BATCH, IngestResult
from cogumi.projects.models import SidecarToken, TokenStatus
from cogumi.quotas.ingest import IngestQuota
from cogumi.quotas.models import OrgQuota
from cogumi.quotas.storage import measure
from cogumi.runs.models import Run, RunStatus
from tests.events.test_ingest import batch, http_event, running_run
from tests.factories import Accounts, SidecarFixture, project_with_token


def _body(sidecar: SidecarFixture, events: list[dict[str, Any]], **extra: Any) -> bytes:
    import json

    return json.dumps(batch(sidecar, events) | extra).encode()


def _quota(accounts: Accounts) -> IngestQuota:
    state = accounts.app.state
    return IngestQuota(settings=state.settings, bus=state.live_bus)


def _fast(accounts: Accounts) -> ingest_fast.FastPath:
    path = ingest_fast.fast_path(accounts.app.state.engine)
    assert path is not None
    return path


async def _read_and_prepare(
    accounts: Accounts, db: ingest_fast.FastConnection, sidecar: SidecarFixture, body: bytes
) -> tuple[ingest.SidecarRef, ingest.Prepared, ingest.Target]:
    ref = await db.authenticate(sidecar.token)
    parsed = ingest.parse_batch(body)
    target = await db.find_target(ref, parsed, _quota(accounts))
    prepared = ingest.prepare(
        parsed, dialect=accounts.app.state.engine.dialect, token=ref, received_at=utcnow()
    )
    return ref, prepared, target


async def _store(
    accounts: Accounts,
    ref: ingest.SidecarRef,
    prepared: ingest.Prepared,
    target: ingest.Target,
) -> IngestResult:
    """The general path's write, in its own transaction (as the route runs it)."""
    async with transaction(accounts.sessionmaker) as session:
        return await ingest.store(
            session, token=ref, prepared=prepared, target=target, quota=_quota(accounts),
            bus=accounts.app.state.live_bus,
        )  # fmt: skip


async def _general(accounts: Accounts, sidecar: SidecarFixture, body: bytes) -> IngestResult:
    """The general path end to end, as the route runs it for a batch the fast path left."""
    ref = ingest.SidecarRef(sidecar.token_id, sidecar.org_id, sidecar.project_id)
    parsed = ingest.parse_batch(body)
    async with accounts.sessionmaker() as session, session.begin():
        target = await ingest.find_target(session, token=ref, batch=parsed, quota=_quota(accounts))
    prepared = ingest.prepare(
        parsed, dialect=accounts.app.state.engine.dialect, token=ref, received_at=utcnow()
    )
    return await _store(accounts, ref, prepared, target)


_STORED = (
    "SELECT seq, ts, received_at IS NOT NULL, channel, type, actor, dest_host, dest_path, "
    "dest_port, classification, sensitive_path, http_method, status_code, bytes_out, bytes_in, "
    "duration_ms, payload_redacted, matches, integrity_hash, error "
    "FROM events WHERE project_id = :project ORDER BY seq"
)


async def _raw(accounts: Accounts, sql: str, **params: Any) -> list[Sequence[Any]]:
    """Rows as the database holds them (text as stored, not through the ORM)."""
    async with accounts.sessionmaker() as session:
        values = {k: v.hex if isinstance(v, uuid.UUID) and _sqlite(accounts) else v
                  for k, v in params.items()}  # fmt: skip
        return [tuple(row) for row in (await session.execute(text(sql), values)).all()]


def _sqlite(accounts: Accounts) -> bool:
    return str(accounts.app.state.engine.dialect.name) == "sqlite"


async def test_both_paths_store_identical_rows_and_counters(accounts: Accounts) -> None:
    owner = await accounts.signup()
    fast = await project_with_token(accounts, owner.org_id)
    general = await project_with_token(accounts, owner.org_id)
    fast_run, general_run = await running_run(accounts, fast), await running_run(accounts, general)
    moment = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()
    events = [http_event(1), http_event(2, error="upstream reset", http=None),
              http_event(3, payload_redacted={"summary": "ünïcode ✓", "n": [1, 2.5, None]})]  # fmt: skip
    response = await fast.client.post(
        "/api/ingest/events",
        json=batch(fast, events) | {"watermark": moment, "instance_id": "replica-1"},
    )
    assert response.json() == {"ok": True, "accepted": 3, "dropped": 0, "duplicate": False,
                               "run_active": True, "redacted": 0}  # fmt: skip
    body = _body(general, events, watermark=moment, instance_id="replica-1")
    result = await _general(accounts, general, body)
    assert result.model_dump() == response.json()
    rows_fast = await _raw(accounts, _STORED, project=fast.project_id)
    rows_general = await _raw(accounts, _STORED, project=general.project_id)
    assert [r[0] for r in rows_fast] == [1, 2, 3]
    assert rows_fast == rows_general
    if _sqlite(accounts):  # the JSON columns hold the canonical text
        kinds = "SELECT typeof(payload_redacted), typeof(matches) FROM events WHERE project_id = :p"
        for project in (fast.project_id, general.project_id):
            assert set(await _raw(accounts, kinds, p=project)) == {("text", "text")}
        assert rows_fast[2][16] == '{"n":[1,2.5,null],"summary":"ünïcode ✓"}'
        assert rows_fast[0][17].startswith('[{"kind":')
    status_sql = ("SELECT instance_id, sidecar_version, counters, watermark, "
                  "last_event_at IS NOT NULL FROM sidecar_status WHERE token_id = :token")  # fmt: skip
    status_fast = await _raw(accounts, status_sql, token=fast.token_id)
    assert status_fast == await _raw(accounts, status_sql, token=general.token_id)
    assert [row[0] for row in status_fast] == ["replica-1"]
    runs_sql = "SELECT last_seq FROM runs WHERE id = :run"
    assert await _raw(accounts, runs_sql, run=fast_run) == [(3,)]
    assert await _raw(accounts, runs_sql, run=general_run) == [(3,)]
    async with accounts.sessionmaker() as session:
        tokens = {
            t.id: t.events_accepted
            for t in await session.scalars(
                select(SidecarToken).where(SidecarToken.project_id.in_([fast.project_id,
                                                                         general.project_id]))
            )
        }  # fmt: skip
        assert tokens == {fast.token_id: 3, general.token_id: 3}
        # The storage estimate grows by exactly what retention will measure and subtract.
        quota = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == owner.org_id))
        assert quota is not None and quota.stored_events == 6
        _, size = await measure(session, Event.org_id == owner.org_id)
        assert quota.stored_event_bytes == size


async def test_payloads_are_stored_as_their_canonical_text_and_counted_in_characters(
    accounts: Accounts,
) -> None:
    """A batch without floats has its payloads written by msgspec: stored as their
    canonical text, sized in characters as retention measures."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    await running_run(accounts, sidecar)
    payload = {"summary": "ünïcode ✓ …", "b": {"z": 1, "a": ["ß"]}}
    response = await sidecar.client.post(
        "/api/ingest/events",
        json=batch(sidecar, [http_event(1, payload_redacted=payload), http_event(2)]),
    )
    assert response.json()["accepted"] == 2
    sql = "SELECT payload_redacted, matches FROM events WHERE project_id = :p ORDER BY seq"
    stored = await _raw(accounts, sql, p=sidecar.project_id)
    if _sqlite(accounts):
        kinds = "SELECT DISTINCT typeof(payload_redacted), typeof(matches) FROM events"
        assert await _raw(accounts, kinds) == [("text", "text")]
        assert stored[0][0] == '{"b":{"a":["ß"],"z":1},"summary":"ünïcode ✓ …"}'
        assert stored[0][1] == (
            '[{"kind":"OPENAI_KEY","hash":"' + "a" * 64 + '","preview":"sk-…d9","confidence":0.95}]'
        )
    async with accounts.sessionmaker() as session:
        quota = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == owner.org_id))
        _, size = await measure(session, Event.org_id == owner.org_id)
        assert quota is not None and quota.stored_event_bytes == size
        payloads = [e.payload_redacted for e in await session.scalars(
            select(Event).where(Event.project_id == sidecar.project_id).order_by(Event.seq))]  # fmt: skip
        assert payloads[0] == payload


@pytest.mark.parametrize("path", ["fast", "general"])
async def test_token_revoked_while_a_batch_is_prepared_is_403_and_stores_nothing(
    accounts: Accounts, path: str
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = _body(sidecar, [http_event(1), http_event(2)])
    async with _fast(accounts).connect() as db:
        ref, prepared, target = await _read_and_prepare(accounts, db, sidecar, body)
        async with accounts.sessionmaker() as session, session.begin():
            await session.execute(
                update(SidecarToken)
                .where(SidecarToken.id == sidecar.token_id)
                .values(status=TokenStatus.revoked)
            )
        write = (
            db.write(ref, prepared, target)
            if path == "fast"
            else _store(accounts, ref, prepared, target)
        )
        with pytest.raises(Forbidden, match="revoked"):
            await write
    async with accounts.sessionmaker() as session:
        for model in (Event, IngestBatch):
            query = select(func.count()).select_from(model)
            assert await session.scalar(query.where(model.project_id == sidecar.project_id)) == 0


async def test_a_run_that_ends_meanwhile_hands_the_batch_to_the_general_path(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    body = _body(sidecar, [http_event(1), http_event(2)])
    async with _fast(accounts).connect() as db:
        ref, prepared, target = await _read_and_prepare(accounts, db, sidecar, body)
        assert target.run_id == run_id and target.running
        async with accounts.sessionmaker() as session, session.begin():
            await session.execute(
                update(Run).where(Run.id == run_id).values(status=RunStatus.completed)
            )
        assert await db.write(ref, prepared, target) is None  # nothing written
    result = await _store(accounts, ref, prepared, target)
    assert (result.accepted, result.run_active) == (2, False)
    async with accounts.sessionmaker() as session:
        stored = (
            await session.scalars(select(Event).where(Event.project_id == sidecar.project_id))
        ).all()
        assert [(e.run_id, e.seq) for e in stored] == [(None, None), (None, None)]
        assert (await session.get(Run, run_id)).last_seq == 0  # type: ignore[union-attr]
        batches = await session.scalar(
            select(func.count())
            .select_from(IngestBatch)
            .where(IngestBatch.project_id == sidecar.project_id)
        )
        assert batches == 1


async def test_a_held_lock_makes_a_batch_wait_without_stalling_the_server(
    accounts: Accounts, database_url: str
) -> None:
    """SQLite: another connection holds the write lock. PostgreSQL: another transaction
    holds the run's row. The batch waits and lands; the event loop keeps running."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    hold, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        if _sqlite(accounts):
            other = sqlite3.connect(database_url.split(":///", 1)[1], isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                hold.set()
                await release.wait()
                other.execute("COMMIT")
            finally:
                other.close()
            return
        async with accounts.sessionmaker() as session, session.begin():
            await session.execute(select(Run.id).where(Run.id == run_id).with_for_update())
            hold.set()
            await release.wait()

    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while not release.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    warm = await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [http_event(0)]))
    assert warm.status_code == 200  # first-use costs paid outside the measured part
    loop = asyncio.get_running_loop()
    holding = loop.create_task(holder())
    await hold.wait()
    post = loop.create_task(
        sidecar.client.post("/api/ingest/events", json=batch(sidecar, [http_event(1)]))
    )
    await asyncio.sleep(0.1)  # the batch is waiting for the lock from here on
    ticking = loop.create_task(ticker())
    await asyncio.sleep(0.5)
    assert not post.done()  # still waiting for the lock
    release.set()
    response = await asyncio.wait_for(post, 30)
    await holding
    await ticking
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert len(gaps) > 20 and max(gaps) < 0.25, max(gaps)  # the loop was never stalled
    async with accounts.sessionmaker() as session:
        assert (await session.get(Run, run_id)).last_seq == 2  # type: ignore[union-attr]


async def test_nul_in_event_text_is_422_naming_the_field_but_kept_in_the_payload(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    bad = http_event(1)
    bad["destination"] = {**bad["destination"], "path": "/v1/a\x00b"}
    refused = await sidecar.client.post(
        "/api/ingest/events", json=batch(sidecar, [http_event(0), bad])
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["fields"][0]["field"] == "events.1.destination.path"
    kept = http_event(2, payload_redacted={"summary": "bytes", "body_redacted_preview": "a\x00b"})
    response = await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [kept]))
    assert response.status_code == 200, response.text
    async with accounts.sessionmaker() as session:
        (event,) = (
            await session.scalars(select(Event).where(Event.project_id == sidecar.project_id))
        ).all()
        assert event.payload_redacted["body_redacted_preview"] == "a\x00b"


def test_event_ids_are_time_ordered_version_7_uuids() -> None:
    before = time.time_ns() // 1_000_000
    batches = [ingest.new_ids(500), ingest.new_ids(1), ingest.new_ids(ingest.ID_COUNTER_MAX)]
    after = time.time_ns() // 1_000_000
    ids = [value for batch in batches for value in batch]
    parsed = [uuid.UUID(hex=value) for value in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(value == u.hex for value, u in zip(ids, parsed, strict=True))
    assert len(set(ids)) == len(ids) == 501 + ingest.ID_COUNTER_MAX
    # The first 48 bits are the time in milliseconds; each call's ids come in order,
    # and a later call's after an earlier one's.
    assert all(before <= int(value[:12], 16) <= after for value in ids)
    for ids_of_one_call in batches:
        assert ids_of_one_call == sorted(ids_of_one_call)
    assert batches[0][-1] < batches[1][0] or batches[0][-1][:12] == batches[1][0][:12]
    # The 62 bits after the variant are random.
    tails = {int(value[17:], 16) for value in batches[2]}
    assert len(tails) == ingest.ID_COUNTER_MAX
    with pytest.raises(ValueError, match="at most 4096"):
        ingest.new_ids(ingest.ID_COUNTER_MAX + 1)
    assert ingest.ID_COUNTER_MAX > MAX_EVENTS_PER_BATCH


async def test_the_sidecar_probe_looks_at_the_runs_own_project_only(accounts: Accounts) -> None:
    from cogumi.events.service import reserve_seq_and_probe

    owner = await accounts.signup()
    shipping = await project_with_token(accounts, owner.org_id)
    quiet = await project_with_token(accounts, owner.org_id)
    await running_run(accounts, shipping)
    quiet_run = await running_run(accounts, quiet)
    response = await shipping.client.post(
        "/api/ingest/events", json=batch(shipping, [http_event(1)])
    )
    assert response.status_code == 200  # the shipping project now has a status row
    async with transaction(accounts.sessionmaker) as session:
        first, seen = await reserve_seq_and_probe(session, run_id=quiet_run, count=2)
    assert (first, seen) == (1, False)
    await quiet.client.post("/api/ingest/events", json=batch(quiet, [http_event(2)]))
    async with transaction(accounts.sessionmaker) as session:
        first, seen = await reserve_seq_and_probe(session, run_id=quiet_run, count=1)
    assert (first, seen) == (4, True)


async def test_a_waiting_engine_write_goes_before_the_next_batch(
    accounts: Accounts, database_url: str
) -> None:
    """A campaign's write (here a live-stream message) that waits for the lock is not
    overtaken by ingest batches that come after it (SQLite: the engine's driver waits
    inside SQLite's busy handler, which the fast path must not starve)."""
    from cogumi.events import stream

    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    warm = await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [http_event(0)]))
    assert warm.status_code == 200
    hold, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def holder() -> None:
        if _sqlite(accounts):
            other = sqlite3.connect(database_url.split(":///", 1)[1], isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                hold.set()
                await release.wait()
                other.execute("COMMIT")
            finally:
                other.close()
            return
        async with accounts.sessionmaker() as session, session.begin():
            await session.execute(select(Run.id).where(Run.id == run_id).with_for_update())
            hold.set()
            await release.wait()

    async def engine_write() -> None:
        async with transaction(accounts.sessionmaker) as session:
            await stream.publish(session, bus=accounts.app.state.live_bus, org_id=owner.org_id,
                                 run_id=run_id, kind="story.step.created", data={"n": 1})  # fmt: skip
            finished.append("engine")  # holding the lock: the batch cannot be written yet

    async def ingest_batch() -> None:
        response = await sidecar.client.post(
            "/api/ingest/events", json=batch(sidecar, [http_event(1)])
        )
        assert response.status_code == 200, response.text
        finished.append("ingest")

    loop = asyncio.get_running_loop()
    holding = loop.create_task(holder())
    await hold.wait()
    writing = loop.create_task(engine_write())
    await asyncio.sleep(0.3)  # the engine's write is waiting for the lock
    posting = loop.create_task(ingest_batch())
    await asyncio.sleep(0.3)  # and so is the batch
    release.set()
    await asyncio.wait_for(asyncio.gather(holding, writing, posting), 30)
    assert finished == ["engine", "ingest"]
