"""Server-side ingest throttling: events per minute per token, on both limiter backends."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from cogumi.tenancy.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.events.conftest import REDIS_URL, AppFactory
from tests.events.test_ingest import batch, http_event, stored
from tests.factories import Accounts, SidecarFixture, project_with_token

LIMIT = 10


def limiter_settings(backend: str) -> dict[str, object]:
    values: dict[str, object] = {"ingest_rate_limit_per_min": LIMIT}
    if backend == "redis":
        values.update(redis_url=REDIS_URL, redis_key_prefix=f"test-{uuid.uuid4().hex}:")
    return values


async def clear_of_window_edge(margin: float = 10.0) -> None:
    """Windows are aligned to the clock minute; start a test well inside one."""
    left = 60 - time.time() % 60
    if left < margin:
        await asyncio.sleep(left + 0.05)


def sender(app: object, sidecar: SidecarFixture) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://testserver",
        headers={"X-Sidecar-Token": sidecar.token},
    )


async def post(client: httpx.AsyncClient, sidecar: SidecarFixture, n: int) -> httpx.Response:
    return await client.post(
        "/api/ingest/events", json=batch(sidecar, [http_event(i) for i in range(n)])
    )


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_events_per_minute_are_counted_by_events(
    custom_app: AppFactory, accounts: Accounts, backend: str
) -> None:
    owner = await accounts.signup()
    one = await project_with_token(accounts, owner.org_id)
    other = await project_with_token(accounts, owner.org_id)
    await clear_of_window_edge()
    async with (
        custom_app(**limiter_settings(backend)) as app,
        sender(app, one) as client,
        sender(app, other) as other_client,
    ):
        assert (await post(client, one, 6)).status_code == 200
        assert (await post(client, one, 4)).status_code == 200
        over = await post(client, one, 1)
        assert over.status_code == 429, over.text
        retry_after = int(over.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        body = over.json()
        assert body["error"] == "rate_limited" and body["message"]
        assert body["retry_after"] == retry_after and body["limit"] == LIMIT
        # The budget is the token's own: another token still gets in.
        assert (await post(other_client, other, LIMIT)).status_code == 200
        # A watermark-only batch costs nothing and still gets through.
        empty = await client.post("/api/ingest/events", json=batch(one, []))
        assert empty.status_code == 200
    assert len(await stored(accounts, one.project_id)) == LIMIT
    assert len(await stored(accounts, other.project_id)) == LIMIT


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_batch_larger_than_a_minute_is_413(
    custom_app: AppFactory, accounts: Accounts, backend: str
) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    async with custom_app(**limiter_settings(backend)) as app, sender(app, sidecar) as client:
        response = await post(client, sidecar, LIMIT + 1)
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
        assert response.json()["limit"] == LIMIT
        # It charged nothing: a full minute's worth still fits.
        assert (await post(client, sidecar, LIMIT)).status_code == 200
    assert len(await stored(accounts, sidecar.project_id)) == LIMIT


async def test_default_limit_is_300_per_minute(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    await clear_of_window_edge()
    for _ in range(3):
        response = await sidecar.client.post(
            "/api/ingest/events", json=batch(sidecar, [http_event(i) for i in range(100)])
        )
        assert response.status_code == 200, response.text
    over = await sidecar.client.post("/api/ingest/events", json=batch(sidecar, [http_event()]))
    assert over.status_code == 429


def limiter(backend: str) -> RateLimiter:
    if backend == "redis":
        return RedisRateLimiter(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}:")
    return MemoryRateLimiter()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_limiter_cost_weights_a_hit(backend: str) -> None:
    counter = limiter(backend)
    try:
        assert await counter.hit("k", limit=10, window_sec=3600, cost=7) is None
        assert await counter.hit("k", limit=10, window_sec=3600, cost=3) is None
        assert await counter.hit("k", limit=10, window_sec=3600) is not None
        assert await counter.hit("j", limit=10, window_sec=3600, cost=11) is not None
    finally:
        await counter.close()
