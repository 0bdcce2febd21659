"""Check that an agent test endpoint answers, before a campaign depends on it.

``POST {url}/health`` first; when that route does not exist (404/405), a
harmless ping through ``POST {url}/message``. Every hop goes through the
outbound-URL guard: redirects are followed by hand (at most three), each new
target checked again, and the connection goes to the address the guard
checked. The result always carries a sentence a person can act on.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from cogumi import __version__
from cogumi.config import Settings
from cogumi.projects import urlguard

Method = Literal["health", "message"]
MAX_REDIRECTS = 3
MAX_BODY_BYTES = 65_536
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
FALLBACK_CODES = frozenset({404, 405})


@dataclass(frozen=True)
class EndpointCheck:
    ok: bool
    url: str
    latency_ms: float | None
    method: Method | None
    status_code: int | None
    reason: str


@dataclass(frozen=True)
class _Answer:
    status_code: int
    body: bytes
    latency_ms: float


class _Failed(Exception):
    """A call that got no usable HTTP answer; ``reason`` says why in plain words."""

    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


def ping_body() -> dict[str, Any]:
    """The harmless message used when ``/health`` is missing."""
    return {
        "run_id": str(uuid.uuid4()),
        "session_id": f"connectivity-check-{uuid.uuid4().hex[:12]}",
        "actor": "adversary",
        "message": "ping",
        "metadata": {"script_id": "connectivity-check", "step": 0, "attack_style": None},
    }


def _root_cause(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _transport_reason(exc: httpx.HTTPError, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s without an answer"
    for cause in _root_cause(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS error: {cause.verify_message or 'certificate verification failed'}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the agent endpoint running and reachable?)"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}" if str(exc) else "could not connect"
    return f"request failed: {type(exc).__name__}: {exc}"


def _guard_reason(exc: urlguard.UrlRefused) -> str:
    if exc.kind == "blocked":
        return f"blocked by the URL guard: {exc.reason}"
    if exc.kind == "invalid_url":
        return f"invalid URL: {exc.reason}"
    return exc.reason


class _Caller:
    """One validation's HTTP client and settings."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def _send_once(
        self, url: str, verb: str, payload: dict[str, Any] | None
    ) -> tuple[httpx.Response, bytes]:
        try:
            target = await urlguard.check(url, allow_private=self.settings.private_targets_allowed)
        except urlguard.UrlRefused as exc:
            raise _Failed(_guard_reason(exc)) from exc
        parsed = target.parsed
        request = self.client.build_request(
            verb,
            target.pinned_url,
            json=payload,
            headers={"Host": parsed.host_header, "User-Agent": f"cogumi-validate/{__version__}"},
            extensions={"sni_hostname": parsed.host},
        )
        try:
            response = await self.client.send(request, stream=True)
            try:
                body = await self._read_capped(response)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _Failed(_transport_reason(exc, self.settings.request_timeout_sec)) from exc
        return response, body

    async def _read_capped(self, response: httpx.Response) -> bytes:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return body[:MAX_BODY_BYTES]
        return body

    async def call(self, url: str, payload: dict[str, Any] | None) -> _Answer:
        """POST ``url``, following at most three redirects by hand, each one re-checked."""
        verb = "POST"
        started = time.perf_counter()
        for _hop in range(MAX_REDIRECTS + 1):
            response, body = await self._send_once(url, verb, payload)
            location = response.headers.get("location")
            if response.status_code not in REDIRECT_CODES or not location:
                elapsed = (time.perf_counter() - started) * 1000
                return _Answer(response.status_code, body, round(elapsed, 1))
            url = urljoin(url, location)
            if response.status_code in {301, 302, 303}:
                verb, payload = "GET", None
        raise _Failed(f"more than {MAX_REDIRECTS} redirects", status_code=response.status_code)


def _join(base: str, route: str) -> str:
    """``{url}/health``: the route goes on the path, a query string stays at the end."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + route, fragment=""))


def _message_reply_problem(body: bytes) -> str | None:
    """Why a ``/message`` answer does not follow the contract, or None."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "POST /message did not answer JSON"
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return 'POST /message answered JSON without a string "message" field'
    return None


def _result(url: str, method: Method, answer: _Answer) -> EndpointCheck:
    route = f"/{method}"
    if not 200 <= answer.status_code < 300:
        reason = f"POST {route} answered HTTP {answer.status_code}, expected 2xx"
        return EndpointCheck(False, url, answer.latency_ms, method, answer.status_code, reason)
    if method == "message":
        problem = _message_reply_problem(answer.body)
        if problem is not None:
            return EndpointCheck(False, url, answer.latency_ms, method, answer.status_code, problem)
    reason = f"POST {route} answered HTTP {answer.status_code} in {answer.latency_ms:g} ms"
    return EndpointCheck(True, url, answer.latency_ms, method, answer.status_code, reason)


def _failure(url: str, method: Method | None, exc: _Failed) -> EndpointCheck:
    return EndpointCheck(False, url, None, method, exc.status_code, exc.reason)


async def validate_endpoint(url: str, *, settings: Settings) -> EndpointCheck:
    """Health check with a ping fallback; never raises for a bad or unreachable endpoint."""
    try:
        urlguard.check_static(url, allow_private=settings.private_targets_allowed)
    except urlguard.UrlRefused as exc:
        return EndpointCheck(False, url, None, None, None, _guard_reason(exc))
    timeout = httpx.Timeout(settings.request_timeout_sec)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        caller = _Caller(client, settings)
        try:
            health = await caller.call(_join(url, "/health"), None)
        except _Failed as exc:
            return _failure(url, "health", exc)
        if health.status_code not in FALLBACK_CODES:
            return _result(url, "health", health)
        try:
            ping = await caller.call(_join(url, "/message"), ping_body())
        except _Failed as exc:
            return _failure(url, "message", exc)
        return _result(url, "message", ping)
