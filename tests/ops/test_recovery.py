"""Readiness follows real outages: a PostgreSQL cluster and a Redis server of the test's own are
stopped and started under a running app, which reports each one down (503 naming it) and goes
green again by itself, without a restart; API requests work again too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cogumi.app import create_app
from cogumi.db.migrate import upgrade
from tests.conftest import _run_outside_loop, make_settings
from tests.factories import Accounts
from tests.ops.services import ThrowawayPostgres, ThrowawayRedis

pytestmark = pytest.mark.e2e

WAIT_SEC = 60.0  # generous: a loaded machine may be slow to notice


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres() as server:
        _run_outside_loop(upgrade, server.url)
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[ThrowawayRedis]:
    with ThrowawayRedis() as server:
        yield server


@pytest.fixture
async def outage_app(
    postgres: ThrowawayPostgres, redis: ThrowawayRedis, tmp_path: Path
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        postgres.url, tmp_path, redis_url=redis.url,
        redis_key_prefix=f"cogumi-test-{uuid.uuid4().hex[:8]}:", retention_interval_sec=0,
    )  # fmt: skip
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def outage_client(outage_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=outage_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def readiness_becomes(client: httpx.AsyncClient, status: int) -> dict[str, Any]:
    """Poll ``/api/health/ready`` until it answers ``status``; its body."""
    deadline = time.monotonic() + WAIT_SEC
    while True:
        response = await client.get("/api/health/ready")
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, f"still {response.status_code}: {response.text}"
        await asyncio.sleep(0.2)


async def test_postgres_down_then_up(
    outage_app: FastAPI, outage_client: httpx.AsyncClient, postgres: ThrowawayPostgres
) -> None:
    accounts = Accounts(app=outage_app, sessionmaker=outage_app.state.sessionmaker)
    try:
        owner = await accounts.signup()
        assert (await readiness_becomes(outage_client, 200))["down"] == []
        await asyncio.to_thread(postgres.stop)
        try:
            body = await readiness_becomes(outage_client, 503)
            assert body["ready"] is False and body["down"] == ["database"]
            database = body["components"]["database"]
            assert database["ok"] is False and database["detail"]
            assert body["components"]["queue"]["ok"] is True
            assert body["components"]["live_bus"]["ok"] is True
            live = await outage_client.get("/api/health")
            assert live.status_code == 503, live.text
            assert live.json()["error"] == "unavailable" and live.headers["Retry-After"]
            refused = await owner.client.get("/api/projects")
            assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
        finally:
            await asyncio.to_thread(postgres.start)
        body = await readiness_becomes(outage_client, 200)
        assert body["ready"] is True and all(c["ok"] for c in body["components"].values())
        # The pool recovered for ordinary requests too: a signed-in write and a read.
        created = await owner.client.post("/api/projects", json={"name": "after-outage"})
        assert created.status_code == 201, created.text
        assert (await owner.client.get("/api/projects")).status_code == 200
    finally:
        await accounts.close()


async def test_redis_down_then_up(outage_client: httpx.AsyncClient, redis: ThrowawayRedis) -> None:
    assert (await readiness_becomes(outage_client, 200))["down"] == []
    await asyncio.to_thread(redis.stop)
    try:
        body = await readiness_becomes(outage_client, 503)
        assert body["down"] == ["queue", "live_bus"]
        for name in ("queue", "live_bus"):
            assert body["components"][name]["ok"] is False
            assert body["components"][name]["kind"] == "redis"
        assert body["components"]["database"]["ok"] is True
        assert body["components"]["queue"]["detail"]
    finally:
        await asyncio.to_thread(redis.start)
    body = await readiness_becomes(outage_client, 200)
    assert body["ready"] is True and body["down"] == []
