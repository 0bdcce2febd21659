"""Replicas sharing one sidecar token: each process (token + ``instance_id``) keeps its
own status row, drop counters and watermark; the project's watermark waits for the
slowest live one; a clean stop releases it; silent processes are forgotten."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from cogumi.events import ingest_fast, service
from cogumi.events.models import SidecarStatus
from cogumi.projects.models import SidecarToken
from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.runner import Sidecar
from tests.events.test_ingest import batch, http_event, running_run
from tests.events.test_watermark import iso, project_watermark
from tests.factories import Accounts, SidecarFixture, project_with_token
from tests.servers import serve_app


async def beat(
    sidecar: SidecarFixture,
    instance: str,
    *,
    started_at: float = 1000.0,
    dropped: dict[str, int] | None = None,
    state: str = "ok",
) -> None:
    dropped = dropped or {}
    body: dict[str, Any] = {
        "sidecar_version": "2", "instance_id": instance, "started_at": started_at,
        "state": state,
        "counters": {"sent": 1, "dropped": dropped, "dropped_total": sum(dropped.values())},
    }  # fmt: skip
    answer = await sidecar.client.post(
        f"/api/projects/{sidecar.project_id}/sidecar/heartbeat", json=body
    )
    assert answer.status_code == 200, answer.text


async def mark(sidecar: SidecarFixture, instance: str, moment: datetime, events: int = 0) -> None:
    body = batch(sidecar, [http_event(i) for i in range(events)])
    body |= {"instance_id": instance, "watermark": iso(moment)}
    answer = await sidecar.client.post("/api/ingest/events", json=body)
    assert answer.status_code == 200, answer.text


async def statuses(accounts: Accounts, sidecar: SidecarFixture) -> dict[str, SidecarStatus]:
    async with accounts.sessionmaker() as session:
        rows = await session.scalars(
            select(SidecarStatus).where(SidecarStatus.token_id == sidecar.token_id)
        )
        return {row.instance_id: row for row in rows}


async def connection(sidecar: SidecarFixture, accounts: Accounts) -> dict[str, Any]:
    async with accounts.sessionmaker() as session:
        from cogumi.projects.models import Project

        project = await session.get(Project, sidecar.project_id)
        assert project is not None
        return await service.connection_state(session, project=project)


async def test_replicas_sharing_a_token_each_hold_the_project_watermark(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    now = datetime.now(UTC).replace(microsecond=0)
    await beat(sidecar, "replica-a")
    await beat(sidecar, "replica-b")
    await mark(sidecar, "replica-a", now - timedelta(seconds=5), events=2)
    await mark(sidecar, "replica-b", now - timedelta(seconds=30))
    # One row per process: the slower replica holds the project back. (With one row per
    # token, the later watermark would have won and B's unshipped events been missed.)
    assert await project_watermark(accounts, sidecar.project_id) == now - timedelta(seconds=30)
    await mark(sidecar, "replica-b", now - timedelta(seconds=2))
    assert await project_watermark(accounts, sidecar.project_id) == now - timedelta(seconds=5)
    rows = await statuses(accounts, sidecar)
    assert set(rows) == {"replica-a", "replica-b"}
    assert rows["replica-a"].last_event_at is not None and rows["replica-b"].last_event_at is None
    state = await connection(sidecar, accounts)
    assert state["sidecars_live"] == 2 and state["connected"] is True
    # A replica that stops cleanly no longer holds the watermark back.
    await beat(sidecar, "replica-a", state="stopped")
    assert await project_watermark(accounts, sidecar.project_id) == now - timedelta(seconds=2)
    # ...not even when a batch it had in flight arrives after its last heartbeat.
    await mark(sidecar, "replica-a", now - timedelta(seconds=40))
    assert await project_watermark(accounts, sidecar.project_id) == now - timedelta(seconds=2)
    assert (await connection(sidecar, accounts))["sidecars_live"] == 1
    await beat(sidecar, "replica-b", state="stopped")
    assert await project_watermark(accounts, sidecar.project_id) is None
    state = await connection(sidecar, accounts)
    assert state["sidecars_live"] == 0 and state["connected"] is False


async def test_replica_drops_are_counted_once_each(accounts: Accounts) -> None:
    """Interleaved heartbeats of two replicas: each is compared with its own previous
    one. (Compared with the other's, every heartbeat looked like a restart and its
    whole total was counted again.)"""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    for _ in range(3):
        await beat(sidecar, "a", started_at=1000.0, dropped={"throttled": 2})
        await beat(sidecar, "b", started_at=1000.5, dropped={"buffer_full": 3})
    await beat(sidecar, "b", started_at=1000.5, dropped={"buffer_full": 4})
    async with accounts.sessionmaker() as session:
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_dropped == 2 + 4


async def test_the_connection_card_adds_up_the_live_replicas_counters(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    alone = {"sent": 1, "dropped": {"throttled": 2}, "dropped_total": 2, "state": "ok",
             "started_at": 1000.0}  # fmt: skip
    await beat(sidecar, "a", dropped={"throttled": 2})
    assert (await connection(sidecar, accounts))["counters"] == alone
    await beat(sidecar, "b", dropped={"throttled": 1, "buffer_full": 3}, started_at=900.0)
    await beat(sidecar, "c", dropped={"buffer_full": 1}, started_at=1100.0)
    counters = (await connection(sidecar, accounts))["counters"]
    assert counters == {"sent": 3, "dropped": {"throttled": 3, "buffer_full": 4},
                        "dropped_total": 7, "state": "ok", "started_at": 900.0}  # fmt: skip
    # A stopped process no longer counts; with one live process left, its own counters.
    for instance in ("b", "c"):
        await beat(sidecar, instance, state="stopped")
    assert (await connection(sidecar, accounts))["counters"] == alone


def test_counters_that_do_not_add_up_keep_the_first_value() -> None:
    summed = service._summed(
        [{"n": 1, "x": "a", "m": {"k": 1}, "b": True}, {"n": 2.5, "x": 3, "m": 4, "b": True}]
    )
    assert summed == {"n": 3.5, "x": "a", "m": {"k": 1}, "b": True}


async def test_senders_without_an_instance_keep_one_row_per_token(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    now = datetime.now(UTC).replace(microsecond=0)
    answer = await sidecar.client.post(
        f"/api/projects/{sidecar.project_id}/sidecar/heartbeat", json={"sidecar_version": "1"}
    )
    assert answer.status_code == 200
    body = batch(sidecar, [http_event(0)]) | {"watermark": iso(now)}
    assert (await sidecar.client.post("/api/ingest/events", json=body)).status_code == 200
    assert list(await statuses(accounts, sidecar)) == [""]
    assert await project_watermark(accounts, sidecar.project_id) == now


@pytest.mark.parametrize("instance", ["a b", "x" * 65, "ünï", "a\nb"])
async def test_a_bad_instance_id_is_422_naming_it(accounts: Accounts, instance: str) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = batch(sidecar, [http_event(0)]) | {"instance_id": instance}
    answer = await sidecar.client.post("/api/ingest/events", json=body)
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "instance_id"
    answer = await sidecar.client.post(
        f"/api/projects/{sidecar.project_id}/sidecar/heartbeat", json={"instance_id": instance}
    )
    assert answer.status_code == 422
    assert await statuses(accounts, sidecar) == {}


async def test_processes_silent_for_a_day_are_forgotten(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    for instance in ("gone", "quiet-but-shipping", "recent"):
        await beat(sidecar, instance)
    await mark(sidecar, "quiet-but-shipping", datetime.now(UTC), events=1)
    long_ago = datetime.now(UTC) - service.STATUS_KEPT - timedelta(minutes=1)
    async with accounts.sessionmaker() as session, session.begin():
        await session.execute(
            update(SidecarStatus)
            .where(SidecarStatus.token_id == sidecar.token_id,
                   SidecarStatus.instance_id.in_(["gone", "quiet-but-shipping"]))
            .values(last_heartbeat_at=long_ago, last_event_at=None)
        )  # fmt: skip
        await session.execute(
            update(SidecarStatus)
            .where(SidecarStatus.token_id == sidecar.token_id,
                   SidecarStatus.instance_id == "quiet-but-shipping")
            .values(last_event_at=datetime.now(UTC))
        )  # fmt: skip
    await beat(sidecar, "new")
    assert set(await statuses(accounts, sidecar)) == {"quiet-but-shipping", "recent", "new"}


async def test_concurrent_batches_of_two_replicas_keep_their_own_watermarks(
    accounts: Accounts, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of two processes of one token in one run, sent at once: on PostgreSQL
    they are written in groups mixing both; each process's row gets its own latest
    watermark and last event, never the other's."""
    groups: list[set[str]] = []
    write_group = ingest_fast._PostgresConnection.write_group

    async def noted(self: Any, group: list[Any]) -> None:
        groups.append({item.prepared.instance for item in group})
        await write_group(self, group)

    monkeypatch.setattr(ingest_fast._PostgresConnection, "write_group", noted)
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    await running_run(accounts, sidecar)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    marks = {"a": [base + timedelta(seconds=s) for s in (1, 9, 4, 7, 2)],
             "b": [base + timedelta(seconds=s) for s in (3, 5, 20, 6, 8)]}  # fmt: skip
    bodies = []
    for index in range(5):
        for instance in ("a", "b"):
            body = batch(sidecar, [http_event(i) for i in range(index + 1)])
            bodies.append(
                body | {"instance_id": instance, "watermark": iso(marks[instance][index])}
            )
    answers = await asyncio.gather(
        *[sidecar.client.post("/api/ingest/events", json=body) for body in bodies]
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    rows = await statuses(accounts, sidecar)
    assert {k: r.watermark for k, r in rows.items()} == {"a": max(marks["a"]), "b": max(marks["b"])}
    assert all(r.last_event_at is not None for r in rows.values())
    async with accounts.sessionmaker() as session:
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_accepted == 2 * sum(range(1, 6))
    if backend == "postgresql":
        assert any(len(g) == 2 for g in groups), groups  # some group mixed both processes


async def test_two_real_sidecars_on_one_token(app: Any, accounts: Accounts) -> None:
    """Two sidecar processes' shippers with one token: two live rows with their own
    instance ids; stopping one leaves the other holding the watermark."""
    owner = await accounts.signup()
    fixture = await project_with_token(accounts, owner.org_id)
    await running_run(accounts, fixture)
    async with serve_app(app) as api:
        options = SidecarOptions(listen="127.0.0.1:0", ingest_url=api, token=fixture.token,
                                 project_id=str(fixture.project_id), batch_flush_ms=50,
                                 heartbeat_interval=0.3)  # fmt: skip
        one, two = Sidecar(options), Sidecar(options)
        await one.start()
        await two.start()
        try:
            assert one.shipper.instance_id != two.shipper.instance_id
            async with asyncio.timeout(10):
                while (await connection(fixture, accounts))["sidecars_live"] < 2:
                    await asyncio.sleep(0.05)
                while any(
                    r.watermark is None for r in (await statuses(accounts, fixture)).values()
                ):
                    await asyncio.sleep(0.05)
            await one.stop()
            rows = await statuses(accounts, fixture)
            assert set(rows) == {one.shipper.instance_id, two.shipper.instance_id}
            stopped = rows[one.shipper.instance_id]
            assert stopped.counters.get("state") == "stopped" and stopped.stopped_at is not None
            assert (await connection(fixture, accounts))["sidecars_live"] == 1
            # The project's watermark follows the live sidecar past the stopped one's
            # (read between two reads of the live one's: it goes on shipping meanwhile).
            frozen = stopped.watermark
            assert frozen is not None

            async def live_mark() -> datetime:
                mark = (await statuses(accounts, fixture))[two.shipper.instance_id].watermark
                assert mark is not None
                return mark

            async with asyncio.timeout(10):
                while await live_mark() <= frozen:
                    await asyncio.sleep(0.05)
            before = await live_mark()
            mark_now = await project_watermark(accounts, fixture.project_id)
            after = await live_mark()
            assert mark_now is not None and frozen < before <= mark_now <= after
        finally:
            await two.stop()
    assert uuid.UUID(hex=one.shipper.instance_id)  # 32 hex digits: within the 64 allowed
