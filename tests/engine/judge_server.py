"""A fake OpenAI-compatible judge: a real HTTP app on loopback (served by tests.servers).

``answer(reply_text)`` decides what it says: a verdict string ("refusal" /
"compliance") becomes a well-formed chat answer; ``Raw(status, body)`` is sent
as is (garbage, errors). ``delay_sec`` makes it slow. Every request is kept
(path, headers, decoded body) so tests can check what left the machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Raw:
    status: int
    body: bytes


def chat_answer(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
    ).encode()


def reply_in(body: dict[str, Any]) -> str:
    """The reply text the judge was asked about (between the marker lines)."""
    content = body["messages"][-1]["content"]
    lines = content.split("\n")
    marker = lines[1]
    end = len(lines) - 1 - lines[::-1].index(marker)
    return "\n".join(lines[2:end])


@dataclass
class FakeJudge:
    answer: Callable[[str], str | Raw]
    delay_sec: float = 0.0
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.raw_bodies.append(body)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        payload = json.loads(body) if body else {}
        self.requests.append((scope["path"], headers, payload))
        if self.delay_sec:
            await asyncio.sleep(self.delay_sec)
        decided = (
            self.answer(reply_in(payload))
            if scope["path"].endswith("/chat/completions")
            else Raw(404, b"{}")
        )
        status, out = (
            (decided.status, decided.body)
            if isinstance(decided, Raw)
            else (200, chat_answer(json.dumps({"verdict": decided, "confidence": 0.9})))
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out})
