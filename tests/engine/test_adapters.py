"""Target adapters against real local HTTP servers: native, OpenAI-compatible, template."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cogumi.engine.adapters import AdapterError, build_adapter
from tests.servers import serve_app


class Agent:
    """A configurable ASGI agent that records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.script: list[tuple[int, bytes]] = []  # queued (status, body) answers
        self.delay = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = json.loads(body or b"{}")
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((scope["path"], payload, headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, out = (
            self.script.pop(0) if self.script else (200, self.default(scope["path"], payload))
        )
        extra = [(b"location", b"http://elsewhere/")] if 300 <= status < 400 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": out})

    def default(self, path: str, payload: dict[str, Any]) -> bytes:
        if path == "/message":
            return json.dumps(
                {"message": f"echo: {payload['message']}", "done": False, "metadata": {"k": 1}}
            ).encode()
        if path == "/chat/completions":
            turns = len(payload["messages"])
            return json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": f"turn {turns}"}}]}
            ).encode()
        return json.dumps(
            {"data": {"reply": f"template: {payload.get('input', {}).get('text')}"}}
        ).encode()


async def test_native_contract_round_trip() -> None:
    agent = Agent()
    async with serve_app(agent) as url:
        adapter = build_adapter(url=url, config={"kind": "native"}, allow_private=True)
        reply = await adapter.send(
            run_id="r1", session_id="s1", message="hi", metadata={"script_id": "S1", "step": 1}
        )
        await adapter.aclose()
    assert reply.text == "echo: hi" and reply.metadata == {"k": 1} and reply.latency_ms > 0
    path, body, _ = agent.requests[0]
    assert path == "/message"
    assert body == {
        "run_id": "r1",
        "session_id": "s1",
        "actor": "adversary",
        "message": "hi",
        "metadata": {"script_id": "S1", "step": 1},
    }


async def test_openai_adapter_keeps_history_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_KEY_FOR_TEST", "test-key-value")
    agent = Agent()
    async with serve_app(agent) as url:
        adapter = build_adapter(
            url=url + "/",
            config={"kind": "openai", "model": "m1", "api_key_env": "AGENT_KEY_FOR_TEST"},
            allow_private=True,
        )
        first = await adapter.send(run_id="r", session_id="a", message="one", metadata={})
        second = await adapter.send(run_id="r", session_id="a", message="two", metadata={})
        other = await adapter.send(run_id="r", session_id="b", message="fresh", metadata={})
        await adapter.aclose()
    assert (first.text, second.text, other.text) == ("turn 1", "turn 3", "turn 1")
    _, body, headers = agent.requests[1]
    assert [m["content"] for m in body["messages"]] == ["one", "turn 1", "two"]
    assert body["model"] == "m1"
    assert headers["authorization"] == "Bearer test-key-value"


async def test_template_adapter_fills_and_follows_the_path() -> None:
    agent = Agent()
    config = {
        "kind": "template",
        "request_template": {"input": {"text": "{{message}}", "conv": "{{session_id}}"}},
        "response_path": "data.reply",
    }
    async with serve_app(agent) as url:
        adapter = build_adapter(url=url + "/chat", config=config, allow_private=True)
        reply = await adapter.send(run_id="r", session_id="s9", message="hello", metadata={})
        await adapter.aclose()
    assert reply.text == "template: hello"
    assert agent.requests[0][1] == {"input": {"text": "hello", "conv": "s9"}}


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ([(500, b"{}")], "HTTP 500"),
        ([(200, b"not json")], "not JSON"),
        ([(200, b'{"reply": "no message field"}')], 'string "message"'),
        ([(302, b"")], "redirect"),
        ([(503, b"{}")] * 3, "HTTP 503 (after 3 attempts)"),
    ],
)
async def test_native_errors_are_readable(answers: list[tuple[int, bytes]], reason: str) -> None:
    agent = Agent()
    agent.script = list(answers)
    async with serve_app(agent) as url:
        adapter = build_adapter(url=url, config={"kind": "native"}, allow_private=True)
        with pytest.raises(AdapterError) as info:
            await adapter.send(run_id="r", session_id="s", message="m", metadata={})
        await adapter.aclose()
    assert reason in info.value.reason


async def test_transient_503_is_retried() -> None:
    agent = Agent()
    agent.script = [(503, b"{}")]
    async with serve_app(agent) as url:
        adapter = build_adapter(url=url, config={"kind": "native"}, allow_private=True)
        reply = await adapter.send(run_id="r", session_id="s", message="again", metadata={})
        await adapter.aclose()
    assert reply.text == "echo: again"
    assert len(agent.requests) == 2


async def test_timeout_and_refused_and_guard() -> None:
    agent = Agent()
    agent.delay = 1.0
    async with serve_app(agent) as url:
        adapter = build_adapter(
            url=url, config={"kind": "native"}, allow_private=True, timeout_sec=0.2, retries=1
        )
        with pytest.raises(AdapterError, match=r"did not answer within 0\.2s"):
            await adapter.send(run_id="r", session_id="s", message="m", metadata={})
        await adapter.aclose()
    refused = build_adapter(
        url="http://127.0.0.1:9", config={"kind": "native"}, allow_private=True, retries=0
    )
    with pytest.raises(AdapterError, match="could not reach the agent"):
        await refused.send(run_id="r", session_id="s", message="m", metadata={})
    await refused.aclose()
    hosted = build_adapter(url="http://127.0.0.1:9", config={"kind": "native"}, allow_private=False)
    with pytest.raises(AdapterError, match="agent URL refused"):
        await hosted.send(run_id="r", session_id="s", message="m", metadata={})
    await hosted.aclose()
    metadata = build_adapter(
        url="http://169.254.169.254/", config={"kind": "native"}, allow_private=True
    )
    with pytest.raises(AdapterError, match="agent URL refused"):
        await metadata.send(run_id="r", session_id="s", message="m", metadata={})
    await metadata.aclose()
