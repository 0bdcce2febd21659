"""Ingest: token auth, validation, idempotency, gap-free seq under concurrency, bounds."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from cogumi.events import ingest_fast
from cogumi.events.models import Event
from cogumi.events.service import canonical_json
from cogumi.projects.models import SidecarToken, TokenStatus
from cogumi.runs.models import Run, RunStatus
from cogumi.tenancy.models import Role
from tests.factories import Accounts, SidecarFixture, project_with_token


def http_event(n: int = 0, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(),
        "channel": "http",
        "type": "request",
        "actor": "target",
        "destination": {
            "host": "API.example.com",
            "path": f"/v1/items/{n}",
            "port": 443,
            "classification": "tool",
        },
        "http": {
            "method": "post",
            "status_code": 201,
            "bytes_out": 120,
            "bytes_in": 48,
            "duration_ms": 12.5,
        },
        "payload_redacted": {
            "summary": f"POST api.example.com/v1/items/{n}",
            "body_redacted_preview": '{"a": 1}',
        },
        "matches": [
            {"kind": "OPENAI_KEY", "hash": "a" * 64, "preview": "sk-…d9", "confidence": 0.95}
        ],
    }
    event.update(overrides)
    return event


def batch(
    sidecar: SidecarFixture, events: list[dict[str, Any]], batch_id: str | None = None
) -> dict[str, Any]:
    return {
        "project_id": str(sidecar.project_id),
        "run_id": None,
        "sidecar_version": "0.1.0",
        "batch_id": batch_id or uuid.uuid4().hex,
        "events": events,
    }


async def stored(accounts: Accounts, project_id: uuid.UUID) -> list[Event]:
    async with accounts.sessionmaker() as session:
        rows = await session.scalars(
            select(Event).where(Event.project_id == project_id).order_by(Event.seq, Event.ts)
        )
        return list(rows.all())


async def running_run(accounts: Accounts, sidecar: SidecarFixture) -> uuid.UUID:
    run_id = uuid.uuid4()
    async with accounts.sessionmaker() as session, session.begin():
        session.add(
            Run(
                id=run_id,
                org_id=sidecar.org_id,
                project_id=sidecar.project_id,
                status=RunStatus.running,
                started_at=datetime.now(UTC),
            )
        )
    return run_id


async def test_batch_is_stored_exactly(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    response = await sidecar.client.post(
        "/api/ingest/events", json=batch(sidecar, [http_event(1), http_event(2)])
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "accepted": 2,
        "dropped": 0,
        "duplicate": False,
        "run_active": False,
        "redacted": 0,
    }
    events = await stored(accounts, sidecar.project_id)
    assert len(events) == 2
    first = next(e for e in events if e.dest_path == "/v1/items/1")
    assert first.org_id == owner.org_id and first.run_id is None and first.seq is None
    assert (first.channel, first.type, first.actor) == ("http", "request", "target")
    assert (first.dest_host, first.dest_port, first.classification) == (
        "api.example.com",
        443,
        "tool",
    )
    assert (first.http_method, first.status_code, first.bytes_out, first.bytes_in) == (
        "POST",
        201,
        120,
        48,
    )
    assert first.matches == [
        {"kind": "OPENAI_KEY", "hash": "a" * 64, "preview": "sk-…d9", "confidence": 0.95}
    ]
    assert (
        first.integrity_hash == hashlib.sha256(canonical_json(first.payload_redacted)).hexdigest()
    )
    assert first.sidecar_token_id == sidecar.token_id


async def test_token_errors(accounts: Accounts, client) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = batch(sidecar, [http_event()])
    missing = await client.post("/api/ingest/events", json=body)
    assert missing.status_code == 401
    unknown = await client.post(
        "/api/ingest/events", json=body, headers={"X-Sidecar-Token": sidecar.token[:-3] + "zzz"}
    )
    assert unknown.status_code == 401
    malformed = await client.post(
        "/api/ingest/events", json=body, headers={"X-Sidecar-Token": "nope"}
    )
    assert malformed.status_code == 401
    async with accounts.sessionmaker() as session, session.begin():
        await session.execute(
            update(SidecarToken)
            .where(SidecarToken.id == sidecar.token_id)
            .values(status=TokenStatus.revoked)
        )
    revoked = await sidecar.client.post("/api/ingest/events", json=body)
    assert revoked.status_code == 403
    assert revoked.json()["error"] == "forbidden"
    assert await stored(accounts, sidecar.project_id) == []


async def test_token_of_another_project_is_403(accounts: Accounts) -> None:
    owner = await accounts.signup()
    one = await project_with_token(accounts, owner.org_id)
    other = await project_with_token(accounts, owner.org_id)
    response = await one.client.post("/api/ingest/events", json=batch(other, [http_event()]))
    assert response.status_code == 403
    assert await stored(accounts, other.project_id) == []


async def test_malformed_batches_are_422_naming_the_field(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    cases = [
        (batch(sidecar, [http_event(channel="carrier-pigeon")]), "events.0.channel"),
        (batch(sidecar, [http_event(unexpected=1)]), "events.0.unexpected"),
        (
            batch(
                sidecar,
                [http_event(matches=[{"kind": "X", "hash": "raw-secret", "confidence": 1}])],
            ),
            "events.0.matches.0.hash",
        ),
        ({**batch(sidecar, []), "project_id": "not-a-uuid"}, "project_id"),
        ({k: v for k, v in batch(sidecar, []).items() if k != "batch_id"}, "batch_id"),
    ]
    for body, field in cases:
        response = await sidecar.client.post("/api/ingest/events", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["fields"][0]["field"] == field
    assert await stored(accounts, sidecar.project_id) == []


async def test_duplicate_batch_stores_nothing_twice(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    body = batch(sidecar, [http_event(1), http_event(2), http_event(3)], batch_id="retry-me")
    first = await sidecar.client.post("/api/ingest/events", json=body)
    again = await sidecar.client.post("/api/ingest/events", json=body)
    assert first.json()["accepted"] == 3
    assert again.status_code == 200
    assert again.json() == {
        "ok": True,
        "accepted": 3,
        "dropped": 0,
        "duplicate": True,
        "run_active": False,
        "redacted": 0,
    }
    concurrent = await asyncio.gather(
        *[
            sidecar.client.post(
                "/api/ingest/events", json=batch(sidecar, [http_event()], batch_id="twin")
            )
            for _ in range(5)
        ]
    )
    assert sorted(r.json()["duplicate"] for r in concurrent) == [False, True, True, True, True]
    assert len(await stored(accounts, sidecar.project_id)) == 4


async def test_concurrent_batches_into_one_run_get_gap_free_seq(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    sizes = [1, 7, 3, 20, 5, 11, 2, 9]
    responses = await asyncio.gather(
        *[
            sidecar.client.post(
                "/api/ingest/events", json=batch(sidecar, [http_event(i) for i in range(n)])
            )
            for n in sizes
        ]
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    events = await stored(accounts, sidecar.project_id)
    assert all(e.run_id == run_id for e in events)
    assert sorted(e.seq for e in events) == list(range(1, sum(sizes) + 1))
    async with accounts.sessionmaker() as session:
        assert (await session.get(Run, run_id)).last_seq == sum(sizes)  # type: ignore[union-attr]


async def test_payload_is_truncated_to_64_kb(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    big = "é" * 50_000  # 100 KB of UTF-8
    event = http_event(payload_redacted={"summary": "big", "body_redacted_preview": big})
    response = await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [event]))
    assert response.status_code == 200
    (stored_event,) = await stored(accounts, sidecar.project_id)
    assert len(canonical_json(stored_event.payload_redacted)) <= 64 * 1024
    assert stored_event.payload_redacted["truncated"] is True
    assert stored_event.payload_redacted["body_redacted_preview"].startswith("éé")


async def test_heartbeat_connection_and_config(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(
        accounts,
        owner.org_id,
        tool_domains=["tools.example.com"],
        sink_domains=["attacker-sink.local"],
    )
    before = await owner.client.get(f"/api/projects/{sidecar.project_id}/connection")
    assert before.status_code == 200
    assert before.json()["connected"] is False and before.json()["last_heartbeat_at"] is None
    beat = await sidecar.client.post(
        f"/api/projects/{sidecar.project_id}/sidecar/heartbeat",
        json={
            "sidecar_version": "0.1.0",
            "state": "shipping",
            "counters": {"sent": 5, "queued": 0, "dropped": {"throttled": 2}, "dropped_total": 2},
        },
    )
    assert beat.status_code == 200, beat.text
    assert beat.json() == {"ok": True, "run_active": False}
    await sidecar.client.post(
        "/api/ingest/events", json=batch(sidecar, [http_event(), http_event()])
    )
    after = (await owner.client.get(f"/api/projects/{sidecar.project_id}/connection")).json()
    assert after["connected"] is True
    assert after["sidecar_version"] == "0.1.0"
    assert after["events_last_minute"] == 2
    assert after["last_event_at"] is not None
    assert after["counters"]["dropped"] == {"throttled": 2}
    async with accounts.sessionmaker() as session:
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_dropped == 2 and token.events_accepted == 2
    config = (await sidecar.client.get("/api/sidecar/config")).json()
    assert config["tool_domains"] == ["tools.example.com"]
    assert config["sink_domains"] == ["attacker-sink.local"]
    # Another org cannot see this project's connection.
    stranger = await accounts.signup()
    hidden = await stranger.client.get(f"/api/projects/{sidecar.project_id}/connection")
    assert hidden.status_code == 404


async def test_run_events_are_paged_in_seq_order(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    await sidecar.client.post(
        "/api/ingest/events", json=batch(sidecar, [http_event(i) for i in range(5)])
    )
    viewer = await accounts.member(owner.org_id, Role.VIEWER)
    first = (await viewer.client.get(f"/api/runs/{run_id}/events", params={"limit": 3})).json()
    assert [e["seq"] for e in first["items"]] == [1, 2, 3]
    assert first["next_after_seq"] == 3
    item = first["items"][0]
    assert item["destination"]["classification"] == "tool"
    assert item["http"]["method"] == "POST"
    assert set(item) >= {
        "id",
        "org_id",
        "project_id",
        "run_id",
        "ts",
        "seq",
        "channel",
        "type",
        "actor",
        "payload_redacted",
        "matches",
        "integrity_hash",
    }
    rest = (
        await viewer.client.get(f"/api/runs/{run_id}/events", params={"after_seq": 3, "limit": 3})
    ).json()
    assert [e["seq"] for e in rest["items"]] == [4, 5]
    assert rest["next_after_seq"] is None
    bad = await viewer.client.get(f"/api/runs/{run_id}/events", params={"limit": 5000})
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "limit"


async def test_first_batches_of_a_new_sidecar_race_safely(accounts: Accounts) -> None:
    """Concurrent first batches (no run to serialise them) all land; status row made once."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    responses = await asyncio.gather(
        *[
            sidecar.client.post("/api/ingest/events", json=batch(sidecar, [http_event(i)]))
            for i in range(8)
        ]
    )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len(await stored(accounts, sidecar.project_id)) == 8
    async with accounts.sessionmaker() as session:
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_accepted == 8


async def test_policy_violation_in_a_run_becomes_a_live_story_step(accounts: Accounts) -> None:
    from cogumi.engine.story import build_story
    from cogumi.events.models import StreamMessage
    from cogumi.runs.models import StoryStep

    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    violation = {
        "ts": datetime.now(UTC).isoformat(), "channel": "policy", "type": "policy.violation",
        "actor": "system", "payload_redacted": {"summary": "12 events dropped", "reason": "ingest_throttled"},
    }  # fmt: skip
    await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [http_event(1)]))
    response = await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [violation]))
    assert response.status_code == 200, response.text
    async with accounts.sessionmaker() as session:
        steps = (await session.scalars(select(StoryStep).where(StoryStep.run_id == run_id))).all()
        kinds = [
            m.kind
            for m in (
                await session.scalars(select(StreamMessage).where(StreamMessage.run_id == run_id))
            ).all()
        ]
        events = (await session.scalars(select(Event).where(Event.run_id == run_id))).all()
    (step,) = steps
    assert step.claim_title == "Policy: ingest throttled" and step.status == "ingest_throttled"
    assert "story.step.created" in kinds
    # The live step is the one the story builder makes on replay.
    replay = build_story([{"id": str(e.id), "seq": e.seq, "type": e.type, "ts": e.ts,
                           "payload_redacted": e.payload_redacted} for e in events])  # fmt: skip
    assert [list(s.evidence_event_ids) for s in replay] == [step.evidence_event_ids]


async def test_concurrent_batches_of_a_run_are_written_together_and_answered_alone(
    accounts: Accounts, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the batches of one run that arrive while a write is in flight
    are written as one group: one transaction, and still each batch its own answer
    (a repeated batch_id in the same group is stored once), gap-free seq."""
    groups: list[int] = []
    write_group = ingest_fast._PostgresConnection.write_group

    async def counted(self: Any, group: list[Any]) -> None:
        groups.append(len(group))
        await write_group(self, group)

    monkeypatch.setattr(ingest_fast._PostgresConnection, "write_group", counted)
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    sizes = [3, 1, 5, 2, 4, 6, 1, 2, 3, 7, 2, 1]
    bodies = [batch(sidecar, [http_event(i) for i in range(n)]) for n in sizes]
    bodies += [batch(sidecar, [http_event(0), http_event(1)], batch_id="twice")] * 3
    responses = await asyncio.gather(
        *[sidecar.client.post("/api/ingest/events", json=body) for body in bodies]
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    answers = [r.json() for r in responses]
    assert [a["accepted"] for a in answers] == [*sizes, 2, 2, 2]
    assert sorted(a.get("duplicate", False) for a in answers[-3:]) == [False, True, True]
    assert all(a["run_active"] for a in answers[:-3])
    events = await stored(accounts, sidecar.project_id)
    assert len(events) == sum(sizes) + 2
    assert all(e.run_id == run_id for e in events)
    assert sorted(e.seq for e in events) == list(range(1, sum(sizes) + 3))
    async with accounts.sessionmaker() as session:
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None and token.events_accepted == sum(sizes) + 2
    if backend == "postgresql":
        assert sum(groups) == len(bodies)  # every batch went through a group
        assert max(groups) > 1, groups


async def test_a_group_that_reaches_the_quota_warning_falls_back_to_one_by_one(
    accounts: Accounts,
) -> None:
    """A group whose total would cross the run's quota warning is rolled back and its
    batches written alone: the ones below the line on the fast path, the one that
    crosses it by the general path (which publishes the warning); nothing lost."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = uuid.uuid4()
    async with accounts.sessionmaker() as session, session.begin():
        session.add(Run(id=run_id, org_id=sidecar.org_id, project_id=sidecar.project_id,
                        status=RunStatus.running, started_at=datetime.now(UTC),
                        config={"quota": {"events_per_run": 100}}))  # fmt: skip
    sizes = [10] * 9  # 90 of 100: past the 80% warning, within the cap
    responses = await asyncio.gather(
        *[
            sidecar.client.post(
                "/api/ingest/events", json=batch(sidecar, [http_event(i) for i in range(n)])
            )
            for n in sizes
        ]
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(r.json()["accepted"] for r in responses) == 90
    events = await stored(accounts, sidecar.project_id)
    assert sorted(e.seq for e in events) == list(range(1, 91))
    async with accounts.sessionmaker() as session:
        run = await session.get(Run, run_id)
        assert run is not None and run.last_seq == 90
