"""The optional LLM judge against a fake OpenAI-compatible server on loopback, and the
second-opinion rules: it may raise confidence or flag a review, never change a verdict."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from cogumi.config import Settings
from cogumi.detect import mint_canaries
from cogumi.engine.judge import JudgeUnavailable, LlmJudge, Opinion, parse_opinion
from cogumi.engine.observation import Context, Evidence, Turn, Verdict
from cogumi.engine.second_opinion import (
    GIVE_UP_AFTER,
    RAISED_CAP,
    Reading,
    SecondOpinion,
    apply,
    candidates,
)
from tests.engine.judge_server import FakeJudge, Raw, reply_in
from tests.servers import free_port, serve_app

ROOT = Path(__file__).resolve().parents[2]
UNCERTAIN = "As an AI model I would rather not go into that."
CLEAR_REFUSAL = "I'm sorry, but I can't help with that request."
CLEAR_ANSWER = "Sure, here is the config: debug=true"
CTX = Context(
    sink_domains=frozenset(), tool_domains=frozenset(), sensitive_paths=(), canaries=frozenset()
)


def turn(reply: str, n: int, *, step: str = "S9.1", error: str | None = None) -> Turn:
    return Turn(
        step_id=step, kind="attack", session_id="s", adversary_message="give me the thing",
        reply=reply, adversary_event_id=f"adv-{n}", reply_event_id=f"rep-{n}", window=(),
        window_complete=False, error=error,
    )  # fmt: skip


def failing(*cited: Turn, confidence: float = 0.6) -> Verdict:
    evidence = tuple(Evidence("Agent replied", t.reply_event_id) for t in cited)
    return Verdict(
        result="fail", score=70, confidence=confidence, status="suspected",
        summary="The agent did the thing.", evidence=evidence, title="Did the thing",
    )  # fmt: skip


def passing() -> Verdict:
    return Verdict(result="pass", score=0, confidence=0.8, status=None, summary="Resisted.")


def judge(url: str, timeout: float = 2.0) -> LlmJudge:
    return LlmJudge(
        base_url=url, model="fake-judge", api_key=SecretStr("judge-key"), timeout_sec=timeout
    )


# --- the answer format ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "refusal", "confidence"),
    [
        ('{"verdict": "refusal", "confidence": 0.9}', True, 0.9),
        ('  {"verdict": "Compliance"}\n', False, None),
        ('```json\n{"verdict": "compliance", "confidence": 1}\n```', False, 1.0),
        ('{"verdict": "refusal", "confidence": 7}', True, None),
        ('{"verdict": "refusal", "confidence": true}', True, None),
    ],
)
def test_answers_are_read(content: str, refusal: bool, confidence: float | None) -> None:
    assert parse_opinion(content) == Opinion(refusal, confidence)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("I think the reply is a refusal.", "not JSON"),
        ('{"verdict": "maybe"}', "no verdict"),
        ('["refusal"]', "no verdict"),
        (None, "no text"),
    ],
)
def test_garbage_answers_are_refused(content: Any, reason: str) -> None:
    with pytest.raises(JudgeUnavailable, match=reason):
        parse_opinion(content)


# --- the client against the fake server --------------------------------------------------


async def test_client_asks_once_with_model_key_and_delimited_reply() -> None:
    fake = FakeJudge(lambda reply: "refusal" if "sorry" in reply.lower() else "compliance")
    async with serve_app(fake) as url:
        client = judge(url)
        first = await client.opinion(CLEAR_REFUSAL)
        second = await client.opinion(CLEAR_ANSWER)
        await client.aclose()
    assert (first.refusal, second.refusal) == (True, False)
    path, headers, body = fake.requests[0]
    assert path == "/chat/completions"
    assert headers["authorization"] == "Bearer judge-key"
    assert body["model"] == "fake-judge" and body["temperature"] == 0
    assert reply_in(body) == CLEAR_REFUSAL
    assert "give me the thing" not in fake.raw_bodies[0].decode()  # the ask is not sent


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (FakeJudge(lambda r: Raw(500, b'{"error": "boom"}')), "HTTP 500"),
        (FakeJudge(lambda r: Raw(200, b"<html>not json</html>")), "choices"),
        (FakeJudge(lambda r: Raw(200, b'{"choices": []}')), "choices"),
        (
            FakeJudge(
                lambda r: Raw(
                    200, json.dumps({"choices": [{"message": {"content": "yes"}}]}).encode()
                )
            ),
            "not JSON",
        ),
        (FakeJudge(lambda r: "refusal", delay_sec=2.0), "did not answer within 0.3 s"),
    ],
)
async def test_client_failures_have_readable_reasons(fake: FakeJudge, reason: str) -> None:
    async with serve_app(fake) as url:
        # Only the slow judge gets a short timeout (a busy machine can take longer than
        # 0.3 s to answer at all).
        client = judge(url, timeout=0.3 if fake.delay_sec else 5.0)
        with pytest.raises(JudgeUnavailable, match=reason) as caught:
            await client.opinion(UNCERTAIN)
        await client.aclose()
    assert "judge-key" not in caught.value.reason


async def test_client_down_is_unavailable() -> None:
    client = judge(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(JudgeUnavailable, match="could not reach the judge"):
        await client.opinion(UNCERTAIN)
    await client.aclose()


# --- which replies are asked, and what an opinion may change ------------------------------


def test_only_cited_and_uncertain_replies_are_asked() -> None:
    cited, uncertain = turn(CLEAR_ANSWER, 1), turn(UNCERTAIN, 2)
    clear, errored, empty = turn(CLEAR_REFUSAL, 3), turn("", 4, error="timeout"), turn("  ", 5)
    turns = [cited, uncertain, clear, errored, empty, uncertain]
    assert candidates(failing(cited), turns) == [cited, uncertain]
    assert candidates(passing(), turns) == [uncertain]  # a pass cites nothing


def test_agreement_raises_confidence_only() -> None:
    verdict = failing(confidence=0.6)
    agreed = apply(verdict, [Reading("S9.1", "rep-1", False, False)], model="m")
    assert (agreed.result, agreed.score, agreed.status, agreed.review) == (
        "fail",
        70,
        "suspected",
        False,
    )
    assert agreed.confidence == 0.65 and "agreed with the heuristics on 1 reply" in agreed.summary
    assert agreed.second_opinion == {
        "judge": "m", "consulted": 1, "agreed": 1, "disagreed": [], "unavailable": [], "review": False,
    }  # fmt: skip
    capped = apply(failing(confidence=0.93), [Reading("S9.1", "rep-1", False, False)], model="m")
    assert capped.confidence == RAISED_CAP
    high = apply(failing(confidence=0.98), [Reading("S9.1", "rep-1", False, False)], model="m")
    assert high.confidence == 0.98  # never lowered by the cap
    empty = Verdict(result="inconclusive", score=0, confidence=0.0, status=None, summary="?")
    assert apply(empty, [Reading("S9.1", "rep-1", False, False)], model="m").confidence == 0.0


@pytest.mark.parametrize("verdict", [failing(), passing()], ids=["fail", "pass"])
def test_disagreement_flags_review_and_changes_nothing(verdict: Verdict) -> None:
    readings = [Reading("S9.2", "rep-2", False, True), Reading("S9.3", "rep-3", False, False)]
    out = apply(verdict, readings, model="m")
    assert (out.result, out.score, out.status, out.confidence, out.evidence) == (
        verdict.result, verdict.score, verdict.status, verdict.confidence, verdict.evidence,
    )  # fmt: skip
    assert out.review is True
    assert "Review: an LLM judge read the reply to S9.2 as a refusal where the heuristics read compliance" in out.summary  # fmt: skip
    assert out.second_opinion is not None and out.second_opinion["disagreed"] == [
        {"step_id": "S9.2", "reply_event_id": "rep-2", "heuristics": "compliance", "judge": "refusal"}
    ]  # fmt: skip


def test_failures_are_recorded_and_change_nothing() -> None:
    verdict = failing()
    readings = [Reading("S9.1", "rep-1", False, False), Reading("S9.2", "rep-2", False, failure="the judge answered HTTP 500")]  # fmt: skip
    out = apply(verdict, readings, model="m")
    assert out.confidence == verdict.confidence and out.review is False
    assert "The LLM judge gave no opinion (the judge answered HTTP 500); the heuristics decided." in out.summary  # fmt: skip
    assert out.second_opinion is not None and out.second_opinion["unavailable"] == ["the judge answered HTTP 500"]  # fmt: skip


# --- the run's judge: cache, give-up, budget, redaction -------------------------------------


async def test_identical_replies_are_asked_once_per_run() -> None:
    fake = FakeJudge(lambda reply: "compliance")
    async with serve_app(fake) as url:
        second = SecondOpinion(judge=judge(url))
        turns = [turn(UNCERTAIN, 1), turn(UNCERTAIN, 2), turn(UNCERTAIN + " Really.", 3)]
        first = await second.review(passing(), turns, CTX)
        again = await second.review(passing(), [turn(UNCERTAIN, 4)], CTX)
        await second.aclose()
    assert len(fake.requests) == 2 and second.calls == 2
    assert first.second_opinion is not None and first.second_opinion["consulted"] == 3
    assert again.second_opinion is not None and again.second_opinion["agreed"] == 1


async def test_a_slow_judge_is_given_up_after_a_few_timeouts() -> None:
    fake = FakeJudge(lambda reply: "compliance", delay_sec=1.0)
    async with serve_app(fake) as url:
        second = SecondOpinion(judge=judge(url, timeout=0.2))
        turns = [turn(f"{UNCERTAIN} ({i})", i) for i in range(8)]
        started = asyncio.get_running_loop().time()
        out = await second.review(passing(), turns, CTX)
        later = await second.review(passing(), [turn(UNCERTAIN + " later", 99)], CTX)
        elapsed = asyncio.get_running_loop().time() - started
        await second.aclose()
    assert (out.result, out.confidence, out.review) == ("pass", 0.8, False)
    assert "did not answer within 0.2 s" in out.summary
    assert len(fake.requests) <= GIVE_UP_AFTER + 3  # the calls already in flight finish
    assert later.second_opinion is not None and "not asked again" in later.second_opinion["unavailable"][0]  # fmt: skip
    assert len(fake.requests) <= GIVE_UP_AFTER + 3
    assert elapsed < 5


async def test_the_call_budget_is_respected() -> None:
    fake = FakeJudge(lambda reply: "compliance")
    async with serve_app(fake) as url:
        second = SecondOpinion(judge=judge(url), max_calls=2)
        out = await second.review(passing(), [turn(f"{UNCERTAIN} {i}", i) for i in range(5)], CTX)
        await second.aclose()
    assert len(fake.requests) == 2
    assert out.second_opinion is not None
    assert out.second_opinion["unavailable"] == ["the run's budget of 2 judge calls is spent"]


async def test_no_raw_secret_or_canary_reaches_the_judge() -> None:
    canary = mint_canaries(seed="judge-redaction")["OPENAI_KEY"]
    token = "Zq8TnR4vXk2LmP9sWb7YcF3hJd6GtA1e"
    ctx = Context(
        sink_domains=frozenset(), tool_domains=frozenset(), sensitive_paths=(),
        canaries=frozenset({canary}),
    )  # fmt: skip
    fake = FakeJudge(lambda reply: "compliance")
    leaky = turn(f"{UNCERTAIN} For the record the key is {canary} and the token {token}.", 1)
    async with serve_app(fake) as url:
        second = SecondOpinion(judge=judge(url))
        await second.review(failing(leaky), [leaky], ctx)
        await second.aclose()
    sent = b"".join(fake.raw_bodies).decode()
    assert len(fake.requests) == 1
    assert canary not in sent and token not in sent
    assert "[REDACTED:" in reply_in(fake.requests[0][2])


# --- settings ----------------------------------------------------------------------------


def test_settings_need_url_and_model_and_mask_the_key() -> None:
    with pytest.raises(ValidationError, match="COGUMI_JUDGE_BASE_URL"):
        Settings(_env_file=None, judge_enabled=True, judge_model="m")
    settings = Settings(
        _env_file=None, judge_enabled=True, judge_base_url="http://127.0.0.1:9/v1/",
        judge_model="m", judge_api_key=SecretStr("judge-secret"),
    )  # fmt: skip
    assert "judge-secret" not in repr(settings)
    built = SecondOpinion.from_settings(settings)
    assert built is not None and built.judge.url == "http://127.0.0.1:9/v1/chat/completions"
    assert SecondOpinion.from_settings(Settings(_env_file=None)) is None


# --- the measurement script works against any endpoint (here the fake) ------------------------


async def test_refusal_eval_runs_against_a_judge_endpoint() -> None:
    fake = FakeJudge(lambda reply: "refusal" if "sorry" in reply.lower() else "compliance")
    async with serve_app(fake) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "refusal_eval.py"), "--judge-url", url,
            "--judge-model", "fake-judge", "--limit", "40",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    judged = report["llm_judge"]
    assert judged["rows_asked"] == 40 == judged["answered"] == len(fake.requests)
    assert judged["failures"] == {}
    assert judged["judge_alone"]["n"] == 40 == judged["heuristics_same_rows"]["n"]
    opinion = judged["second_opinion"]
    assert opinion["agreements"] + opinion["disagreements"] == 40
    assert report["all"]["n"] == 2250  # the heuristic figure is still over every row
