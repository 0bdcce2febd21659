"""The campaign runner against small local agents (no sidecar): results, findings,
story, events and the live stream, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text

from cogumi.db.engine import transaction
from cogumi.engine.runner import execute_run
from cogumi.events.models import Event, StreamMessage
from cogumi.findings.models import Finding
from cogumi.runs.models import Run, RunStatus, ScriptResult, StoryStep
from tests.factories import Accounts, project_with_token
from tests.servers import serve_app


def agent_app(answer: Any) -> Any:
    """A native-contract agent answering ``answer(message)``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        reply = answer(json.loads(body)["message"]) if scope["path"] == "/message" else "ok"
        out = json.dumps({"message": reply, "done": False}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out})

    return app


async def start_run(
    accounts: Accounts, owner_org: uuid.UUID, url: str, scripts: list[str]
) -> tuple[uuid.UUID, uuid.UUID]:
    sidecar = await project_with_token(accounts, owner_org, agent_test_url=url)
    run_id = uuid.uuid4()
    config = {
        "scripts": scripts, "intensity": "low", "styles": [],
        "project": {"id": str(sidecar.project_id), "agent_test_url": url, "adapter": {"kind": "native"},
                    "sink_domains": ["attacker-sink.local"], "tool_domains": [], "sensitive_paths": ["/admin"]},
    }  # fmt: skip
    async with transaction(accounts.sessionmaker) as session:
        session.add(Run(id=run_id, org_id=owner_org, project_id=sidecar.project_id, status=RunStatus.running,
                        started_at=datetime.now(UTC), config=config))  # fmt: skip
    return run_id, sidecar.project_id


async def never() -> bool:
    return False


async def test_leaky_agent_gives_a_confirmed_canary_finding(app: Any, accounts: Accounts) -> None:
    owner = await accounts.signup()
    leaked: dict[str, str] = {}
    async with serve_app(
        agent_app(lambda m: f"Sure, the key is {leaked['key']} - anything else?")
    ) as url:
        run_id, project_id = await start_run(accounts, owner.org_id, url, ["S1"])
        minted = (await owner.client.post(f"/api/projects/{project_id}/canaries")).json()
        leaked["key"] = next(i["value"] for i in minted["items"] if i["kind"] == "OPENAI_KEY")
        await execute_run(sessionmaker=accounts.sessionmaker, settings=app.state.settings,
                          bus=app.state.live_bus, run_id=run_id, should_stop=never)  # fmt: skip
    async with accounts.sessionmaker() as session:
        (result,) = (
            await session.scalars(select(ScriptResult).where(ScriptResult.run_id == run_id))
        ).all()
        (finding,) = (await session.scalars(select(Finding).where(Finding.run_id == run_id))).all()
        steps = (
            await session.scalars(
                select(StoryStep).where(StoryStep.run_id == run_id).order_by(StoryStep.seq_end)
            )
        ).all()
        events = (
            await session.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.seq))
        ).all()
        stream = (
            await session.scalars(select(StreamMessage).where(StreamMessage.run_id == run_id))
        ).all()
        run = await session.get(Run, run_id)
        rows = []
        for table in ("events", "findings", "story_steps", "script_results", "stream_messages"):
            rows.extend((await session.execute(text(f"SELECT * FROM {table}"))).all())
        dump = " ".join(str(r) for r in rows)
    assert result.result.value == "fail" and result.score == 100
    assert (finding.status.value, finding.confidence, finding.score) == ("confirmed", 1.0, 100)
    assert finding.category == "secret_leakage" and finding.owasp["llm"]
    assert 2 <= len(finding.evidence_event_ids) <= 8 and finding.narrative_steps
    assert [s.step_kind.value for s in steps] == ["info", "confirmed", "info"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    messages = [e for e in events if e.type == "agent.message"]
    assert {e.actor for e in messages} == {"adversary", "target"}
    assert all(e.payload_redacted["script_id"] == "S1" for e in messages)
    assert any(m["kind"] == "CANARY" for e in messages for m in e.matches)
    assert {m.kind for m in stream} >= {"story.step.created", "finding.created"}
    assert run is not None and run.risk_score == 100
    assert leaked["key"] not in dump


async def test_refusing_agent_passes_with_no_finding(app: Any, accounts: Accounts) -> None:
    owner = await accounts.signup()
    async with serve_app(agent_app(lambda m: "I can't share credentials or configuration.")) as url:
        run_id, _ = await start_run(accounts, owner.org_id, url, ["S1", "P01"])
        await execute_run(sessionmaker=accounts.sessionmaker, settings=app.state.settings,
                          bus=app.state.live_bus, run_id=run_id, should_stop=never)  # fmt: skip
    async with accounts.sessionmaker() as session:
        results = (
            await session.scalars(select(ScriptResult).where(ScriptResult.run_id == run_id))
        ).all()
        findings = (await session.scalars(select(Finding).where(Finding.run_id == run_id))).all()
        run = await session.get(Run, run_id)
    assert {r.script_id: r.result.value for r in results} == {"S1": "pass", "P01": "pass"}
    assert findings == []
    assert run is not None and run.risk_score == 0


async def test_stop_lands_within_one_step(app: Any, accounts: Accounts) -> None:
    owner = await accounts.signup()
    calls = {"n": 0}

    async def stop_after_two_turns() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # one check before the script, one before each turn

    async with serve_app(agent_app(lambda m: "no")) as url:
        run_id, _ = await start_run(accounts, owner.org_id, url, ["S1", "S2"])
        await execute_run(sessionmaker=accounts.sessionmaker, settings=app.state.settings,
                          bus=app.state.live_bus, run_id=run_id, should_stop=stop_after_two_turns)  # fmt: skip
    async with accounts.sessionmaker() as session:
        events = (
            await session.scalars(
                select(Event).where(Event.run_id == run_id, Event.type == "agent.message")
            )
        ).all()
        results = (
            await session.scalars(select(ScriptResult).where(ScriptResult.run_id == run_id))
        ).all()
    assert len(events) == 4  # two turns, each a message and its reply; nothing half-written
    assert results == []


async def test_a_run_without_agent_url_fails_with_a_readable_reason(accounts: Accounts) -> None:
    """Through the API and the embedded worker: the reason is the campaign's own words."""
    import asyncio

    owner = await accounts.signup()
    project = (
        await owner.client.post("/api/projects", json={"name": f"nourl-{uuid.uuid4().hex[:6]}"})
    ).json()
    created = await owner.client.post(
        f"/api/projects/{project['id']}/runs", json={"scripts": ["S1"]}
    )
    assert created.status_code in (201, 202), created.text
    run_id = created.json()["id"]
    async with asyncio.timeout(60):
        while True:
            run = (await owner.client.get(f"/api/runs/{run_id}")).json()
            if run["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.2)
    assert run["status"] == "failed"
    assert (
        run["failure_reason"] == "the project has no agent test URL; set one and validate it first"
    )
