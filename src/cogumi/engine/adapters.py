"""Target adapters: how the engine talks to the agent under test.

Three kinds, one interface (:class:`TargetAdapter`):

- ``native``: the product's contract, ``POST {url}/message`` with
  ``{run_id, session_id, actor, message, metadata}`` -> ``{message, done, metadata}``;
- ``openai``: an OpenAI-compatible ``POST {url}/chat/completions``; the adapter
  keeps each session's message history, since that API is stateless;
- ``template``: any JSON endpoint, through a request template with
  ``{{message}}`` (also ``{{session_id}}``, ``{{run_id}}``) and a dotted
  response path to the reply text.

Every call goes through the outbound-URL guard (re-checked per request, no
redirects followed), has a per-request timeout and a bounded number of
retries on transport errors and 5xx answers. Failures raise
:class:`AdapterError` with a readable reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from cogumi import __version__
from cogumi.projects import urlguard

MAX_REPLY_BYTES = 256 * 1024
RETRY_STATUSES = frozenset({502, 503, 504})


class AdapterError(Exception):
    """The agent could not be reached or answered something unusable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AgentReply:
    text: str
    done: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0


class TargetAdapter(Protocol):
    async def send(
        self, *, run_id: str, session_id: str, message: str, metadata: dict[str, Any]
    ) -> AgentReply: ...

    async def aclose(self) -> None: ...


@dataclass
class HttpCaller:
    """Guarded JSON POSTs with timeout and bounded retries."""

    allow_private: bool
    timeout_sec: float = 30.0
    retries: int = 2
    backoff_sec: float = 0.25
    client: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(follow_redirects=False, trust_env=False)
    )

    async def post_json(
        self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[Any, float]:
        """POST ``body``; returns the decoded JSON answer and the latency in ms."""
        last: AdapterError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_sec * (2 ** (attempt - 1)))
            try:
                return await self._once(url, body, headers or {})
            except _Retryable as exc:
                last = AdapterError(exc.reason)
        assert last is not None
        raise AdapterError(f"{last.reason} (after {self.retries + 1} attempts)")

    async def _once(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[Any, float]:
        try:
            target = await urlguard.check(url, allow_private=self.allow_private)
        except urlguard.UrlRefused as exc:
            raise AdapterError(f"agent URL refused: {exc.reason}") from exc
        request = self.client.build_request(
            "POST",
            target.pinned_url,
            json=body,
            headers={
                "Host": target.parsed.host_header,
                "User-Agent": f"cogumi/{__version__}",
                **headers,
            },
            extensions={"sni_hostname": target.parsed.host},
            timeout=self.timeout_sec,
        )
        started = time.perf_counter()
        try:
            response = await self.client.send(request, stream=True)
            try:
                raw = await _read_capped(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise _Retryable(f"agent did not answer within {self.timeout_sec:g}s") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"could not reach the agent: {type(exc).__name__}") from exc
        latency = (time.perf_counter() - started) * 1000
        return _decode(response, raw), latency


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise AdapterError(f"agent reply is larger than {MAX_REPLY_BYTES} bytes")
    return b"".join(chunks)


def _decode(response: httpx.Response, raw: bytes) -> Any:
    status = response.status_code
    if status in RETRY_STATUSES:
        raise _Retryable(f"agent answered HTTP {status}")
    if 300 <= status < 400:
        raise AdapterError(
            f"agent answered a redirect ({status}); point the project at the final URL"
        )
    if status >= 400:
        raise AdapterError(f"agent answered HTTP {status}")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise AdapterError("agent reply is not JSON") from exc


def _join(base: str, route: str) -> str:
    return base.rstrip("/") + route


@dataclass
class NativeAdapter:
    url: str
    caller: HttpCaller

    async def send(
        self, *, run_id: str, session_id: str, message: str, metadata: dict[str, Any]
    ) -> AgentReply:
        body = {
            "run_id": run_id,
            "session_id": session_id,
            "actor": "adversary",
            "message": message,
            "metadata": metadata,
        }
        answer, latency = await self.caller.post_json(_join(self.url, "/message"), body)
        if not isinstance(answer, dict) or not isinstance(answer.get("message"), str):
            raise AdapterError('agent reply must be a JSON object with a string "message"')
        extra = answer.get("metadata")
        return AgentReply(
            text=answer["message"],
            done=bool(answer.get("done", False)),
            metadata=extra if isinstance(extra, dict) else {},
            latency_ms=latency,
        )

    async def aclose(self) -> None:
        await self.caller.client.aclose()


@dataclass
class OpenAIChatAdapter:
    url: str
    model: str
    caller: HttpCaller
    api_key: str | None = None
    history: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))

    async def send(
        self, *, run_id: str, session_id: str, message: str, metadata: dict[str, Any]
    ) -> AgentReply:
        messages = self.history[session_id]
        body = {"model": self.model, "messages": [*messages, {"role": "user", "content": message}]}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        answer, latency = await self.caller.post_json(
            _join(self.url, "/chat/completions"), body, headers
        )
        text = _lookup(answer, "choices.0.message.content")
        if not isinstance(text, str):
            raise AdapterError("chat completion has no choices[0].message.content text")
        messages.extend(
            [{"role": "user", "content": message}, {"role": "assistant", "content": text}]
        )
        return AgentReply(text=text, latency_ms=latency)

    async def aclose(self) -> None:
        await self.caller.client.aclose()


@dataclass
class TemplateJsonAdapter:
    url: str
    request_template: dict[str, Any]
    response_path: str
    caller: HttpCaller

    async def send(
        self, *, run_id: str, session_id: str, message: str, metadata: dict[str, Any]
    ) -> AgentReply:
        values = {"{{message}}": message, "{{session_id}}": session_id, "{{run_id}}": run_id}
        body = _fill(self.request_template, values)
        answer, latency = await self.caller.post_json(self.url, body)
        text = _lookup(answer, self.response_path)
        if not isinstance(text, str):
            raise AdapterError(f"no text at response path {self.response_path!r}")
        return AgentReply(text=text, latency_ms=latency)

    async def aclose(self) -> None:
        await self.caller.client.aclose()


def _fill(template: Any, values: dict[str, str]) -> Any:
    """Replace placeholders inside every string of a JSON template (values stay strings)."""
    if isinstance(template, str):
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        return template
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


def _lookup(document: Any, path: str) -> Any:
    """Follow a dotted path (``choices.0.message.content``); None when it does not exist."""
    node = document
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def build_adapter(
    *,
    url: str,
    config: dict[str, Any],
    allow_private: bool,
    timeout_sec: float = 30.0,
    retries: int = 2,
) -> TargetAdapter:
    """The adapter a project's (snapshotted) adapter config asks for."""
    caller = HttpCaller(allow_private=allow_private, timeout_sec=timeout_sec, retries=retries)
    kind = config.get("kind", "native")
    if kind == "native":
        return NativeAdapter(url=url, caller=caller)
    if kind == "openai":
        env_name = config.get("api_key_env")
        api_key = os.environ.get(env_name) if env_name else None
        return OpenAIChatAdapter(
            url=url, model=str(config["model"]), caller=caller, api_key=api_key
        )
    if kind == "template":
        return TemplateJsonAdapter(
            url=url,
            request_template=dict(config["request_template"]),
            response_path=str(config["response_path"]),
            caller=caller,
        )
    raise AdapterError(f"unknown adapter kind {kind!r}")
