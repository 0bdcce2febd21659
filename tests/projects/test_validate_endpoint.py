"""Agent endpoint validation against real local servers, with private targets on and off."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from cogumi.app import create_app
from cogumi.projects.validation import validate_endpoint
from cogumi.tenancy.models import Role
from tests.conftest import make_settings
from tests.factories import Account, Accounts
from tests.projects.agent_server import AgentServer, Reply, self_signed_context
from tests.projects.helpers import create_project, error_fields

TIMEOUT = 1.0
AGENT_REPLY = {"message": "pong", "done": False, "metadata": {}}


async def _app(database_url: str, data_dir: Path, **overrides: object) -> FastAPI:
    return create_app(make_settings(database_url, data_dir, **overrides))


@pytest.fixture(scope="module")
async def loose_app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    """Private targets allowed (embedded default) and a short timeout."""
    app = await _app(
        database_url,
        tmp_path_factory.mktemp("loose"),
        allow_private_targets=True,
        request_timeout_sec=TIMEOUT,
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def strict_app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    """Private targets refused, as in hosted mode."""
    app = await _app(
        database_url,
        tmp_path_factory.mktemp("strict"),
        mode="hosted",
        request_timeout_sec=TIMEOUT,
    )
    assert app.state.settings.private_targets_allowed is False
    async with app.router.lifespan_context(app):
        yield app


async def _owner(app: FastAPI) -> tuple[Accounts, Account]:
    factory = Accounts(app=app, sessionmaker=app.state.sessionmaker)
    return factory, await factory.signup()


async def _validate(owner: Account, project: dict[str, Any], url: str | None = None) -> Any:
    body = {"url": url} if url is not None else None
    response = await owner.client.post(
        f"/api/projects/{project['id']}/validate-agent-endpoint", json=body
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def owner(loose_app: FastAPI) -> AsyncIterator[Account]:
    factory, account = await _owner(loose_app)
    yield account
    await factory.close()


async def test_health_ok_uses_the_projects_url(owner: Account) -> None:
    async with AgentServer({("POST", "/agent/health"): Reply(200, {"status": "ok"})}) as server:
        project = await create_project(owner.client, agent_test_url=server.url + "/agent/")
        result = await _validate(owner, project)
    assert result["ok"] is True, result
    assert result["method"] == "health" and result["status_code"] == 200
    assert result["latency_ms"] is not None and result["latency_ms"] >= 0
    assert [r.path for r in server.received] == ["/agent/health"]
    assert server.received[0].headers["host"] == f"127.0.0.1:{server.port}"


async def test_health_missing_falls_back_to_ping_message(owner: Account) -> None:
    async with AgentServer({("POST", "/message"): Reply(200, AGENT_REPLY)}) as server:
        project = await create_project(owner.client)
        result = await _validate(owner, project, server.url)
    assert result["ok"] is True and result["method"] == "message", result
    assert [r.path for r in server.received] == ["/health", "/message"]
    ping = server.received[1].json()
    assert ping["actor"] == "adversary" and ping["message"] == "ping"
    assert ping["metadata"]["script_id"] == "connectivity-check"
    assert set(ping) == {"run_id", "session_id", "actor", "message", "metadata"}


async def test_405_fallback_with_non_json_reply(owner: Account) -> None:
    routes = {
        ("POST", "/health"): Reply(405),
        ("POST", "/message"): Reply(200, raw=b"<html>hello</html>"),
    }
    async with AgentServer(routes) as server:
        project = await create_project(owner.client)
        result = await _validate(owner, project, server.url)
    assert result["ok"] is False and result["method"] == "message"
    assert result["status_code"] == 200 and "not answer JSON" in result["reason"]


async def test_non_2xx(owner: Account) -> None:
    async with AgentServer({("POST", "/health"): Reply(503, {"error": "down"})}) as server:
        project = await create_project(owner.client)
        result = await _validate(owner, project, server.url)
    assert result["ok"] is False and result["status_code"] == 503
    assert "HTTP 503" in result["reason"]


async def test_slow_endpoint_times_out(owner: Account) -> None:
    async with AgentServer({("POST", "/health"): Reply(200, delay=TIMEOUT * 4)}) as server:
        project = await create_project(owner.client)
        result = await _validate(owner, project, server.url)
    assert result["ok"] is False and result["method"] == "health"
    assert "timed out" in result["reason"]


async def test_connection_refused(owner: Account) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project = await create_project(owner.client)
    result = await _validate(owner, project, f"http://127.0.0.1:{port}")
    assert result["ok"] is False and "connection refused" in result["reason"]


async def test_tls_error_on_self_signed_certificate(owner: Account, tmp_path: Path) -> None:
    routes = {("POST", "/health"): Reply(200)}
    async with AgentServer(routes, ssl_context=self_signed_context(tmp_path)) as server:
        project = await create_project(owner.client)
        by_ip = await _validate(owner, project, server.url)
        by_name = await _validate(owner, project, f"https://localhost:{server.port}")
    for result in (by_ip, by_name):
        assert result["ok"] is False and result["reason"].startswith("TLS error"), result
        assert "certificate" in result["reason"]


async def test_redirect_to_metadata_is_blocked(owner: Account) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    routes = {("POST", "/health"): Reply(302, headers={"Location": metadata})}
    async with AgentServer(routes) as server:
        project = await create_project(owner.client)
        result = await _validate(owner, project, server.url)
    assert result["ok"] is False
    assert result["reason"].startswith("blocked by the URL guard")
    assert "metadata" in result["reason"]


async def test_redirects_followed_and_bounded(owner: Account) -> None:
    routes = {
        ("POST", "/health"): Reply(307, headers={"Location": "/v2/health"}),
        ("POST", "/v2/health"): Reply(200),
        ("POST", "/loop/health"): Reply(307, headers={"Location": "/loop/health"}),
    }
    async with AgentServer(routes) as server:
        project = await create_project(owner.client)
        followed = await _validate(owner, project, server.url)
        looping = await _validate(owner, project, server.url + "/loop")
    assert followed["ok"] is True and followed["status_code"] == 200
    assert looping["ok"] is False and "redirects" in looping["reason"]
    assert [r.path for r in server.received].count("/loop/health") == 4


async def test_invalid_and_missing_urls(owner: Account) -> None:
    project = await create_project(owner.client)
    url = f"/api/projects/{project['id']}/validate-agent-endpoint"
    invalid = await _validate(owner, project, "ftp://agent.example.com")
    assert invalid["ok"] is False and invalid["reason"].startswith("invalid URL")
    assert invalid["method"] is None and invalid["latency_ms"] is None
    metadata = await _validate(owner, project, "http://metadata.google.internal/")
    assert metadata["reason"].startswith("blocked by the URL guard")
    no_url = await owner.client.post(url)
    assert no_url.status_code == 400 and "agent_test_url" in no_url.json()["message"]
    assert error_fields(await owner.client.post(url, json={"url": 5})) == ["url"]
    assert error_fields(await owner.client.post(url, json={"url": "x", "y": 1})) == ["y"]


async def test_only_project_writers_validate(loose_app: FastAPI) -> None:
    factory = Accounts(app=loose_app, sessionmaker=loose_app.state.sessionmaker)
    try:
        team = await factory.org_with_roles()
        project = await create_project(team[Role.OWNER].client)
        url = f"/api/projects/{project['id']}/validate-agent-endpoint"
        body = {"url": "http://127.0.0.1:9"}
        for role in (Role.MEMBER, Role.VIEWER):
            assert (await team[role].client.post(url, json=body)).status_code == 403
    finally:
        await factory.close()


async def test_private_targets_refused_when_not_allowed(strict_app: FastAPI) -> None:
    factory, owner = await _owner(strict_app)
    try:
        async with AgentServer({("POST", "/health"): Reply(200)}) as server:
            refused = await owner.client.post(
                "/api/projects", json={"name": "strict", "agent_test_url": server.url}
            )
            assert error_fields(refused) == ["agent_test_url"]
            assert "private" in refused.json()["fields"][0]["message"]
            project = await create_project(owner.client)
            by_ip = await _validate(owner, project, server.url)
            by_name = await _validate(owner, project, f"http://localhost:{server.port}")
            assert server.received == []
        assert by_ip["ok"] is False and by_ip["reason"].startswith("blocked by the URL guard")
        assert by_name["ok"] is False and "resolves to" in by_name["reason"]
        patched = await owner.client.patch(
            f"/api/projects/{project['id']}", json={"agent_test_url": "http://10.0.0.8/"}
        )
        assert error_fields(patched) == ["agent_test_url"]
    finally:
        await factory.close()


async def test_service_never_raises_for_unreachable_hosts(tmp_path: Path) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db", tmp_path, request_timeout_sec=TIMEOUT)
    result = await validate_endpoint("http://no-such-host.invalid", settings=settings)
    assert result.ok is False and "could not resolve" in result.reason


async def test_validation_does_not_hold_the_write_lock(accounts, settings) -> None:  # type: ignore[no-untyped-def]
    """While a slow endpoint is being validated, other writes go through at once."""
    import asyncio
    import time

    from tests.servers import serve_app

    async def slow_app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await asyncio.sleep(2)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    owner = await accounts.signup()
    created = await owner.client.post("/api/projects", json={"name": "slow-target"})
    project_id = created.json()["id"]
    async with serve_app(slow_app) as base:
        validation = asyncio.ensure_future(
            owner.client.post(
                f"/api/projects/{project_id}/validate-agent-endpoint", json={"url": base}
            )
        )
        await asyncio.sleep(0.3)
        started = time.monotonic()
        other = await owner.client.post("/api/projects", json={"name": "meanwhile"})
        elapsed = time.monotonic() - started
        assert other.status_code == 201
        assert elapsed < 1.5, f"a write waited {elapsed:.2f}s behind endpoint validation"
        result = await validation
    assert result.status_code == 200
    assert result.json()["ok"] is True
