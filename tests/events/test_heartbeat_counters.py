"""Sidecar drop counters add up across heartbeats and restarts, in the token and in
/metrics; sequence numbers past any event are answered, never a 500."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from cogumi.projects.models import SidecarToken
from cogumi.runs.models import Run, RunStatus
from tests.events.test_ingest import running_run
from tests.factories import Accounts, SidecarFixture, project_with_token


def dropped_metric(text: str, reason: str) -> float:
    prefix = f'cogumi_sidecar_dropped_events_total{{reason="{reason}"}} '
    return next((float(line[len(prefix) :]) for line in text.splitlines()
                 if line.startswith(prefix)), 0.0)  # fmt: skip


async def beat(sidecar: SidecarFixture, started_at: float | None, dropped: dict[str, int]) -> None:
    body: dict[str, Any] = {
        "sidecar_version": "0.1.0",
        "counters": {"sent": 1, "queued": 0, "dropped": dropped,
                     "dropped_total": sum(dropped.values())},
    }  # fmt: skip
    if started_at is not None:
        body["started_at"] = started_at
    answer = await sidecar.client.post(
        f"/api/projects/{sidecar.project_id}/sidecar/heartbeat", json=body
    )
    assert answer.status_code == 200, answer.text


async def events_dropped(accounts: Accounts, sidecar: SidecarFixture) -> int:
    async with accounts.sessionmaker() as session:
        token = await session.get(SidecarToken, sidecar.token_id)
        assert token is not None
        return token.events_dropped


async def test_drops_add_up_across_heartbeats_and_restarts(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    before = (await client.get("/metrics")).text

    await beat(sidecar, 1000.0, {"throttled": 2})
    assert await events_dropped(accounts, sidecar) == 2
    # Same process: counters are totals since it started, only the increase is new.
    await beat(sidecar, 1000.0, {"throttled": 5, "buffer_full": 1})
    await beat(sidecar, 1000.0, {"throttled": 5, "buffer_full": 1})
    assert await events_dropped(accounts, sidecar) == 6
    # Restarted (a new started_at): it counts from zero again, so all of it is new.
    # Keeping the largest total ever reported would say 6 here and lose these 3.
    await beat(sidecar, 2000.0, {"throttled": 3, "a-reason-of-its-own": 4})
    assert await events_dropped(accounts, sidecar) == 13

    after = (await client.get("/metrics")).text
    assert dropped_metric(after, "throttled") - dropped_metric(before, "throttled") == 8
    assert dropped_metric(after, "buffer_full") - dropped_metric(before, "buffer_full") == 1
    # A reason the server does not know is counted, under a bounded label.
    assert dropped_metric(after, "other") - dropped_metric(before, "other") == 4
    assert "a-reason-of-its-own" not in after
    card = (await owner.client.get(f"/api/projects/{sidecar.project_id}/connection")).json()
    assert card["counters"]["dropped"] == {"throttled": 3, "a-reason-of-its-own": 4}


async def test_heartbeat_without_start_time_never_double_counts(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    for _ in range(3):
        await beat(sidecar, None, {"throttled": 7})
    assert await events_dropped(accounts, sidecar) == 7


async def test_sequence_numbers_past_any_event(accounts: Accounts) -> None:
    """seq is a 32-bit column: PostgreSQL refused a larger ``after_seq`` with a 500."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    last = await owner.client.get(f"/api/runs/{run_id}/events", params={"after_seq": 2**31 - 1})
    assert last.status_code == 200 and last.json()["items"] == []
    past = await owner.client.get(f"/api/runs/{run_id}/events", params={"after_seq": 2**31})
    assert past.status_code == 422
    assert [f["field"] for f in past.json()["fields"]] == ["after_seq"]
    huge = await owner.client.get(
        f"/api/runs/{run_id}/events", params={"after_seq": 187726956933727296}
    )
    assert huge.status_code == 422
    missing = await owner.client.get(f"/api/runs/{uuid.uuid4()}/events")
    assert missing.status_code == 404


async def test_stream_resumed_past_any_event(accounts: Accounts) -> None:
    """A Last-Event-ID beyond the 32-bit seq range resumes after everything (was a 500)."""
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = await running_run(accounts, sidecar)
    async with accounts.sessionmaker() as session, session.begin():
        run = await session.get(Run, run_id)
        assert run is not None
        run.status, run.ended_at = RunStatus.completed, datetime.now(UTC)
    answer = await owner.client.get(
        f"/api/runs/{run_id}/stream", headers={"Last-Event-ID": "99999999999999999999"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
