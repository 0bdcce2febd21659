"""Operations: readiness per component (Redis down and up), Prometheus metrics and their
token, request ids in and out, JSON logs that never carry a secret."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cogumi.app import create_app
from cogumi.ops.logging import make_handler, scrub
from cogumi.tenancy import security
from tests.conftest import make_settings
from tests.factories import Accounts, project_with_token
from tests.servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def custom_app(database_url: str, tmp_path: Path) -> AppFactory:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(make_settings(database_url, tmp_path, **overrides))
        async with application.router.lifespan_context(application):
            yield application

    return factory


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_ready_when_everything_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert set(body["components"]) == {"database", "queue", "live_bus"}
    assert all(c["ok"] for c in body["components"].values())
    assert body["components"]["queue"]["kind"] == "in-process"
    live = await client.get("/api/health")
    assert live.status_code == 200 and live.json()["ok"] is True


async def test_not_ready_when_redis_is_unreachable(custom_app: AppFactory) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with custom_app(redis_url=closed) as app, client_of(app) as client:
        response = await client.get("/api/health/ready")
    assert response.status_code == 503, response.text
    components = response.json()["components"]
    assert response.json()["ready"] is False
    assert components["database"]["ok"] is True
    assert components["queue"]["ok"] is False and components["queue"]["kind"] == "redis"
    assert components["live_bus"]["ok"] is False
    assert components["queue"]["detail"]


async def test_ready_with_the_real_redis(custom_app: AppFactory) -> None:
    prefix = f"cogumi-test-{uuid.uuid4().hex[:8]}:"
    async with (
        custom_app(redis_url=REDIS_URL, redis_key_prefix=prefix) as app,
        client_of(app) as client,
    ):
        response = await client.get("/api/health/ready")
    assert response.status_code == 200, response.text
    components = response.json()["components"]
    assert all(c["ok"] for c in components.values())
    assert components["live_bus"]["kind"] == "redis"


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, parsed from the text format."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        found = dict(
            part.split("=", 1) for part in head.partition("{")[2].rstrip("}").split(",") if part
        )
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return 0.0


async def test_metrics_count_requests_by_route_template_and_ingest(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    before = (await client.get("/metrics")).text
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    run_id = uuid.uuid4()
    assert (await owner.client.get(f"/api/runs/{run_id}")).status_code == 404
    batch = {"project_id": str(sidecar.project_id), "batch_id": uuid.uuid4().hex,
             "events": [{"ts": "2030-01-01T00:00:00Z", "channel": "http", "type": "request",
                         "actor": "target", "payload_redacted": {"summary": "x"}}] * 3}  # fmt: skip
    assert (await sidecar.client.post("/api/ingest/events", json=batch)).status_code == 200
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    route = "/api/runs/{run_id}"
    assert _sample(after, "cogumi_http_requests_total", route=route, status="404") == (
        _sample(before, "cogumi_http_requests_total", route=route, status="404") + 1
    )
    assert str(run_id) not in after  # labels are templates, never raw paths
    assert _sample(after, "cogumi_ingest_events_total", outcome="accepted") >= (
        _sample(before, "cogumi_ingest_events_total", outcome="accepted") + 3
    )
    for name in ("cogumi_runs", "cogumi_sse_clients", "cogumi_run_duration_seconds"):
        assert f"# TYPE {name}" in after


async def test_metrics_token_when_configured(custom_app: AppFactory) -> None:
    async with custom_app(metrics_token="scrape-me-please") as app, client_of(app) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        assert ok.status_code == 200 and "cogumi_http_requests_total" in ok.text


async def test_request_id_in_and_out(client: httpx.AsyncClient) -> None:
    made = await client.get("/api/health")
    assert len(made.headers["X-Request-ID"]) == 32
    kept = await client.get("/api/health", headers={"X-Request-ID": "lb-1234.abc"})
    assert kept.headers["X-Request-ID"] == "lb-1234.abc"
    hostile = await client.get("/api/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert hostile.headers["X-Request-ID"] != "bad id\twith spaces"
    missing = await client.get("/api/nowhere")
    assert missing.status_code == 404 and missing.headers["X-Request-ID"]


@pytest.fixture
def captured_logs() -> Any:
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_logs_are_json_with_request_ids_and_never_a_secret(
    accounts: Accounts, client: httpx.AsyncClient, captured_logs: io.StringIO
) -> None:
    api_key = security.issue_prefixed_token("cgk").plaintext
    sidecar_token = security.issue_prefixed_token("cgs").plaintext
    refused = await client.get(
        "/api/projects", headers={"Authorization": f"Bearer {api_key}", "X-Request-ID": "req-42"}
    )
    assert refused.status_code == 401
    await client.post("/api/ingest/events", json={}, headers={"X-Sidecar-Token": sidecar_token})
    invite_token = security.random_token()
    await client.get(f"/api/invitations/{invite_token}")
    careless = logging.getLogger("cogumi.test")
    careless.warning("calling with Authorization: Bearer %s and key %s", api_key, sidecar_token)
    try:
        raise RuntimeError(f"token {api_key} rejected")
    except RuntimeError:
        careless.exception("failure")
    output = captured_logs.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines, "nothing was logged"
    for secret in (api_key, sidecar_token, invite_token, api_key.split("_", 2)[2]):
        assert secret not in output
    access = [line for line in lines if line["logger"] == "cogumi.access"]
    tagged = [line for line in access if line.get("request_id") == "req-42"]
    assert tagged and tagged[0]["route"] == "/api/projects" and tagged[0]["status"] == 401
    assert any(line.get("route") == "/api/invitations/{invitation}" for line in access)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)


def test_scrub_masks_tokens_and_detected_secrets() -> None:
    key = security.issue_prefixed_token("cgk").plaintext
    aws = "AKIA" + "IOSFODNN7EXAMPLE"
    text = scrub(f"key={key} aws {aws} X-Cron-Secret: hunter2-secret")
    assert key not in text and aws not in text and "hunter2-secret" not in text
    assert key.split("_")[1] in text  # the non-secret prefix stays, to tell keys apart


def test_url_secrets_are_scrubbed() -> None:
    from cogumi.ops.logging import scrub

    token = "lPWcCjkZcVIhbXqcyV-Am_h_EFJVWVZlQ-oMiGqRVuM"
    line = f'127.0.0.1:5 - "GET /api/invitations/{token} HTTP/1.1" 404 and /invite/{token}'
    assert token not in scrub(line)
    assert "/api/invitations/[REDACTED]" in scrub(line)
    callback = "GET /api/auth/oidc/callback?code=abc123secretcode&state=xyzstate HTTP/1.1"
    assert "abc123secretcode" not in scrub(callback) and "xyzstate" not in scrub(callback)
    assert scrub("/api/invitations/{token}") == "/api/invitations/{token}"
    assert scrub("/api/invitations/{invitation}") == "/api/invitations/{invitation}"
