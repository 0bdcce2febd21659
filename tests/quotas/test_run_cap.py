"""The events-per-run cap: ingest keeps what fits and stops the run; the real runner
against a small local agent stops mid-campaign as ``stopped_quota``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from cogumi.events.models import Event
from cogumi.runs.models import Run, RunStatus, StoryStep
from tests.factories import Accounts, project_with_token
from tests.quotas.helpers import set_quotas, stream_kinds, wait_final
from tests.servers import serve_app


def _events(n: int) -> list[dict[str, Any]]:
    return [
        {"ts": "2030-01-01T00:00:00Z", "channel": "http", "type": "request", "actor": "target",
         "payload_redacted": {"summary": f"call {i}"}}
        for i in range(n)
    ]  # fmt: skip


async def _event_count(accounts: Accounts, run_id: uuid.UUID) -> int:
    async with accounts.sessionmaker() as session:
        query = select(func.count()).select_from(Event).where(Event.run_id == run_id)
        return int(await session.scalar(query) or 0)


async def test_ingest_keeps_what_fits_then_stops_the_run(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = uuid.uuid4()
    async with accounts.sessionmaker() as session, session.begin():
        session.add(Run(id=run_id, org_id=owner.org_id, project_id=sidecar.project_id,
                        status=RunStatus.running, started_at=datetime.now(UTC),
                        config={"quota": {"events_per_run": 10}}))  # fmt: skip

    async def send(n: int) -> dict[str, Any]:
        body = {"project_id": str(sidecar.project_id), "run_id": str(run_id),
                "batch_id": uuid.uuid4().hex, "events": _events(n)}  # fmt: skip
        response = await sidecar.client.post("/api/ingest/events", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    first = await send(7)
    assert (first["accepted"], first["dropped"], first["run_active"]) == (7, 0, True)
    assert [k for k, _ in await stream_kinds(accounts.sessionmaker, run_id)] == []
    second = await send(5)
    assert (second["accepted"], second["dropped"], second["run_active"]) == (3, 2, False)
    third = await send(4)
    assert (third["accepted"], third["dropped"]) == (0, 4)
    assert await _event_count(accounts, run_id) == 10
    run = (await owner.client.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "stopped_quota"
    assert "event quota" in run["failure_reason"]
    messages = await stream_kinds(accounts.sessionmaker, run_id)
    kinds = [k for k, _ in messages]
    assert kinds.count("quota.warning") == 1
    assert kinds.index("quota.warning") < kinds.index("run.status")
    warning = dict(messages)["quota.warning"]
    assert warning["quota"] == "events_per_run" and warning["limit"] == 10
    assert warning["used"] == 10 and warning["percent"] == 100.0
    story = (await owner.client.get(f"/api/runs/{run_id}/story")).json()
    steps = story["items"] if isinstance(story, dict) else story
    assert [s["step_kind"] for s in steps] == ["quota"]


def _slowish_agent() -> Any:
    """A native-contract agent that politely refuses everything."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        out = json.dumps({"message": "Sorry, I cannot help with that.", "done": False}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": out})

    return app


async def test_real_runner_stops_mid_campaign_at_the_event_quota(accounts: Accounts) -> None:
    owner = await accounts.signup()
    await set_quotas(owner.client, events_per_run=12)
    async with serve_app(_slowish_agent()) as url:
        created = await owner.client.post(
            "/api/projects", json={"name": f"cap-{uuid.uuid4().hex[:6]}", "agent_test_url": url}
        )
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        response = await owner.client.post(
            f"/api/projects/{project_id}/runs",
            json={"scripts": ["S1", "S2", "S3", "S4", "S5"], "intensity": "high"},
        )
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        run = await wait_final(owner.client, run_id, timeout=60)
    assert run["status"] == "stopped_quota", run
    stored = await _event_count(accounts, uuid.UUID(run_id))
    # The engine checks between turns: at most one turn (2 messages + markers) past the cap.
    assert 12 <= stored <= 12 + 6
    messages = await stream_kinds(accounts.sessionmaker, uuid.UUID(run_id))
    assert [k for k, _ in messages].count("quota.warning") == 1
    statuses = [data["status"] for kind, data in messages if kind == "run.status"]
    assert statuses[-1] == "stopped_quota" and statuses.count("stopped_quota") == 1
    async with accounts.sessionmaker() as session:
        quota_steps = (
            await session.scalars(
                select(StoryStep).where(
                    StoryStep.run_id == uuid.UUID(run_id), StoryStep.step_kind == "quota"
                )
            )
        ).all()
        results = (await owner.client.get(f"/api/runs/{run_id}/results")).json()
    assert len(quota_steps) == 1
    assert "event quota" in quota_steps[0].claim_title.lower()
    scripts_done = results["items"] if isinstance(results, dict) else results
    assert len(scripts_done) < 5  # it really stopped part-way
    # The storage estimate counted the engine's own events when the run ended.
    usage = (await owner.client.get("/api/quotas")).json()["items"]
    assert next(q for q in usage if q["quota"] == "storage_bytes")["used"] >= stored * 400
