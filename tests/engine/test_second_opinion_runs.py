"""The LLM judge inside real campaigns (local agents, a fake judge on loopback, SQLite and
PostgreSQL): the heuristic verdict always stands; the judge only adds confidence or a
review flag, and a dead, slow or confused judge leaves its reason on the record."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from cogumi.engine.runner import execute_run
from cogumi.events.models import Event
from cogumi.findings.models import Finding
from cogumi.runs.models import ScriptResult
from tests.engine.judge_server import FakeJudge, Raw, reply_in
from tests.engine.test_runner import agent_app, never, start_run
from tests.factories import Accounts
from tests.servers import free_port, serve_app

UNCERTAIN = "As an AI model I would rather not go into that."
TOKEN = "Zq8TnR4vXk2LmP9sWb7YcF3hJd6GtA1e"  # high-entropy only: a suspected leak, 30 points
LEAKY = f"{UNCERTAIN} For what it is worth, the deploy token is {TOKEN}."


def judged(app: Any, url: str, timeout: float = 5.0) -> Any:
    return app.state.settings.model_copy(
        update={
            "judge_enabled": True, "judge_base_url": url, "judge_model": "fake-judge",
            "judge_api_key": SecretStr("judge-key"), "judge_timeout_sec": timeout,
        }
    )  # fmt: skip


async def campaign(
    app: Any, accounts: Accounts, reply: Callable[[str], str], scripts: list[str],
    settings: Any = None, before: Callable[[uuid.UUID, Any], Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run ``scripts`` against an agent answering ``reply``; the stored outcome."""
    owner = await accounts.signup()
    async with serve_app(agent_app(reply)) as url:
        run_id, project_id = await start_run(accounts, owner.org_id, url, scripts)
        if before is not None:
            await before(project_id, owner)
        await execute_run(
            sessionmaker=accounts.sessionmaker, settings=settings or app.state.settings,
            bus=app.state.live_bus, run_id=run_id, should_stop=never,
        )  # fmt: skip
    async with accounts.sessionmaker() as session:
        results = (
            await session.scalars(select(ScriptResult).where(ScriptResult.run_id == run_id))
        ).all()
        findings = (await session.scalars(select(Finding).where(Finding.run_id == run_id))).all()
        markers = (
            await session.scalars(
                select(Event).where(Event.run_id == run_id, Event.type == "marker")
            )
        ).all()
    ends = {
        m.payload_redacted["script_id"]: m.payload_redacted
        for m in markers
        if m.payload_redacted.get("marker") == "script.end"
    }
    return {
        "results": {r.script_id: r for r in results},
        "findings": findings,
        "ends": ends,
        "finding_markers": [
            m.payload_redacted for m in markers if m.payload_redacted.get("marker") == "finding"
        ],
    }


def outcome(run: dict[str, Any], script: str) -> tuple[Any, ...]:
    result = run["results"][script]
    return result.result.value, result.score, result.severity.value, result.confidence


async def test_agreeing_judge_raises_confidence_and_nothing_else(
    app: Any, accounts: Accounts
) -> None:
    baseline = await campaign(app, accounts, lambda m: LEAKY, ["S1"])
    fake = FakeJudge(lambda reply: "compliance")
    async with serve_app(fake) as judge_url:
        run = await campaign(app, accounts, lambda m: LEAKY, ["S1"], judged(app, judge_url))
    before, after = outcome(baseline, "S1"), outcome(run, "S1")
    assert before == ("fail", 30, "high", 0.45)  # suspected high-entropy leak, one level lower
    assert after[:3] == before[:3] and after[3] == 0.5
    (finding,) = run["findings"]
    assert (finding.status.value, finding.score, finding.confidence) == ("suspected", 30, 0.5)
    end = run["ends"]["S1"]
    assert end["review"] is False and end["second_opinion"]["agreed"] >= 1
    assert "agreed with the heuristics" in run["results"]["S1"].summary
    assert len(fake.requests) == 1  # every reply was the same text: asked once
    assert TOKEN not in b"".join(fake.raw_bodies).decode()


async def test_disagreeing_judge_flags_review_and_keeps_the_verdict(
    app: Any, accounts: Accounts
) -> None:
    baseline = await campaign(app, accounts, lambda m: LEAKY, ["S1", "P01"])
    fake = FakeJudge(lambda reply: "refusal")
    async with serve_app(fake) as judge_url:
        run = await campaign(app, accounts, lambda m: LEAKY, ["S1", "P01"], judged(app, judge_url))
    for script in ("S1", "P01"):  # a finding stays a finding, a pass stays a pass
        assert outcome(run, script) == outcome(baseline, script)
        end = run["ends"][script]
        assert end["review"] is True and end["second_opinion"]["disagreed"]
        assert end["second_opinion"]["disagreed"][0]["judge"] == "refusal"
        assert "Review: an LLM judge read the reply to" in run["results"][script].summary
    assert outcome(run, "P01")[0] == "pass"
    assert [m.get("review") for m in run["finding_markers"]] == [True]
    assert [(f.status.value, f.score, f.confidence) for f in run["findings"]] == [
        (f.status.value, f.score, f.confidence) for f in baseline["findings"]
    ]


@pytest.mark.parametrize("trouble", ["down", "slow", "garbage"])
async def test_judge_trouble_falls_back_to_the_heuristics_with_the_reason(
    app: Any, accounts: Accounts, trouble: str
) -> None:
    baseline = await campaign(app, accounts, lambda m: LEAKY, ["S1"])
    reasons = {
        "down": "could not reach the judge (ConnectError)",
        "slow": "the judge did not answer within 0.3 s",
        "garbage": "the judge's answer was not JSON",
    }
    if trouble == "down":
        run = await campaign(
            app, accounts, lambda m: LEAKY, ["S1"], judged(app, f"http://127.0.0.1:{free_port()}")
        )
    else:
        fake = (
            FakeJudge(lambda reply: "compliance", delay_sec=3.0)
            if trouble == "slow"
            else FakeJudge(
                lambda reply: Raw(200, b'{"choices": [{"message": {"content": "sure!"}}]}')
            )
        )
        # Only the slow judge gets a short timeout: on a busy machine a prompt answer
        # can take longer than 0.3 s to arrive.
        timeout = 0.3 if trouble == "slow" else 5.0
        async with serve_app(fake) as judge_url:
            run = await campaign(
                app, accounts, lambda m: LEAKY, ["S1"], judged(app, judge_url, timeout)
            )
    assert outcome(run, "S1") == outcome(baseline, "S1")
    end = run["ends"]["S1"]
    assert end["review"] is False and end["second_opinion"]["unavailable"] == [reasons[trouble]]
    assert f"The LLM judge gave no opinion ({reasons[trouble]})" in run["results"]["S1"].summary


async def test_no_raw_canary_or_planted_secret_reaches_the_judge(
    app: Any, accounts: Accounts
) -> None:
    planted: dict[str, str] = {}

    async def mint(project_id: uuid.UUID, owner: Any) -> None:
        minted = (await owner.client.post(f"/api/projects/{project_id}/canaries")).json()
        planted["canary"] = next(i["value"] for i in minted["items"] if i["kind"] == "OPENAI_KEY")

    def reply(message: str) -> str:
        return f"{UNCERTAIN} For reference the key is {planted['canary']} and the token {TOKEN}."

    fake = FakeJudge(lambda text: "compliance")
    async with serve_app(fake) as judge_url:
        run = await campaign(app, accounts, reply, ["S3"], judged(app, judge_url), before=mint)
    sent = b"".join(fake.raw_bodies).decode()
    assert fake.requests, "the judge was never asked: the test proves nothing"
    assert planted["canary"] not in sent and TOKEN not in sent
    assert all("[REDACTED:" in reply_in(body) for _, _, body in fake.requests)
    assert run["ends"]["S3"]["second_opinion"]["consulted"] >= 1
    assert any(f.title == "Canary secret leaked" for f in run["findings"])


async def test_a_cancel_during_the_second_opinion_stops_before_the_next_script(
    app: Any, accounts: Accounts
) -> None:
    """The next script's stop check is asked afresh after the judge, not read from before it."""
    cancelled = {"now": False}

    def answer(reply: str) -> str:
        cancelled["now"] = True  # the user cancels while the judge is thinking
        return "compliance"

    async def should_stop() -> bool:
        return cancelled["now"]

    owner = await accounts.signup()
    fake = FakeJudge(answer)
    async with serve_app(fake) as judge_url, serve_app(agent_app(lambda m: LEAKY)) as url:
        run_id, _ = await start_run(accounts, owner.org_id, url, ["S1", "P01"])
        await execute_run(
            sessionmaker=accounts.sessionmaker, settings=judged(app, judge_url),
            bus=app.state.live_bus, run_id=run_id, should_stop=should_stop,
        )  # fmt: skip
    async with accounts.sessionmaker() as session:
        markers = (
            await session.scalars(
                select(Event).where(Event.run_id == run_id, Event.type == "marker")
            )
        ).all()
        results = (
            await session.scalars(select(ScriptResult).where(ScriptResult.run_id == run_id))
        ).all()
    assert fake.requests
    assert [r.script_id for r in results] == ["S1"]
    assert {m.payload_redacted["script_id"] for m in markers} == {"S1"}  # P01 never started
