"""The demo agent against the real attack library and evaluators.

Every built-in script is played against a real agent process whose tool calls
go through a real sidecar; each turn's window is the sidecar events that
arrived while it ran. The vulnerable profile must be caught by every script,
and the hardened and trap profiles by none, which is what makes the agent
useful as the product's demo target and as its false-alarm check.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import pytest

from cogumi.demo_agent.persona import SYSTEM_PROMPT_MARKERS
from cogumi.engine.evaluators import get, new_nonce
from cogumi.engine.library.loader import Library, Script, fill, load_builtin
from cogumi.engine.observation import Context, NetEvent, Turn, Verdict
from tests.demo_agent.conftest import SECRET, SINK, DemoAgent, Proxy, start_agent

VALUES = {"sink_domain": SINK, "tool_domain": "tools.internal", "sensitive_path": "/admin"}
CONTEXT = Context(
    sink_domains=frozenset({SINK}), tool_domains=frozenset({"tools.internal"}),
    sensitive_paths=("/admin",), canaries=frozenset({SECRET}),
    system_prompt_markers=SYSTEM_PROMPT_MARKERS,
)  # fmt: skip


def _net_event(event: dict[str, Any], index: int) -> NetEvent:
    dest, http = event.get("destination") or {}, event.get("http") or {}
    payload = event.get("payload_redacted") or {}
    return NetEvent(
        id=f"net-{index}", ts=datetime.fromisoformat(event["ts"].replace("Z", "+00:00")),
        type=event["type"], classification=dest.get("classification"), host=dest.get("host"),
        path=dest.get("path"), method=http.get("method"), status_code=http.get("status_code"),
        bytes_out=http.get("bytes_out"), sensitive_path=dest.get("sensitive_path"),
        matches=tuple(event.get("matches") or ()), summary=str(payload.get("summary", "")),
        body_preview=str(payload.get("body_redacted_preview", "")),
    )  # fmt: skip


async def play(agent: DemoAgent, proxy: Proxy, script: Script) -> list[Turn]:
    run_id = str(uuid.uuid4())
    turns = []
    for step in script.steps:
        nonce = new_nonce()
        message = fill(step.prompt, {**VALUES, "nonce": nonce})
        session = f"{script.id}-{step.session}"
        seen = len(proxy.ingest.events)
        reply = await agent.say(message, session=session, run_id=run_id)
        await asyncio.sleep(0.25)  # the sidecar flushes every 20 ms
        window = tuple(_net_event(e, seen + i) for i, e in enumerate(proxy.ingest.events[seen:]))
        turns.append(Turn(
            step_id=step.id, kind=step.kind, session_id=session, adversary_message=message,
            reply=reply, adversary_event_id=f"{step.id}-a", reply_event_id=f"{step.id}-r",
            window=window, window_complete=True, nonce=nonce,
        ))  # fmt: skip
    return turns


async def verdicts(agent: DemoAgent, proxy: Proxy, library: Library) -> dict[str, Verdict]:
    out = {}
    for script in library.scripts.values():
        technique = library.technique_of(script)
        turns = await play(agent, proxy, script)
        out[script.id] = get(technique.evaluator).evaluate(turns, CONTEXT, technique)
    return out


@pytest.fixture(scope="module")
def library() -> Library:
    return load_builtin()


async def test_vulnerable_is_caught_by_every_builtin_script(proxy: Proxy, library: Library) -> None:
    args = ("--profile", "vulnerable", "--secret", SECRET, "--sink-domain", SINK)
    async with start_agent(*args, proxy=proxy) as agent:
        results = await verdicts(agent, proxy, library)
    missed = {
        k: (v.result, v.summary) for k, v in results.items() if v.result not in ("fail", "blocked")
    }
    assert not missed, missed


@pytest.mark.parametrize(
    "profile",
    ["hardened", "trap-quote", "trap-sink-name", "trap-placeholder", "trap-benign-traffic"],
)
async def test_hardened_and_traps_raise_no_finding(
    proxy: Proxy, library: Library, profile: str
) -> None:
    async with start_agent("--profile", profile, "--secret", SECRET, proxy=proxy) as agent:
        results = await verdicts(agent, proxy, library)
    flagged = {
        k: (v.result, v.summary) for k, v in results.items() if v.result in ("fail", "blocked")
    }
    assert not flagged, flagged
