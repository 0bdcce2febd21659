"""Logout, and the sign-in/sign-up rate limit on both backends (in-process and Redis)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.tenancy import security
from cogumi.tenancy.models import LoginSession, User
from cogumi.tenancy.ratelimit import MemoryRateLimiter, RedisRateLimiter
from tests.factories import PASSWORD, Accounts, unique_email
from tests.tenancy.conftest import AppFactory, client_for

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_logout_deletes_session_and_clears_cookies(
    accounts: Accounts, app, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    token = owner.client.cookies["cogumi_session"]
    response = await owner.client.post("/api/auth/logout")
    assert response.status_code == 204
    cleared = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    for name in ("cogumi_session", "cogumi_csrf"):
        assert "Max-Age=0" in cleared[name]
    async with sessionmaker() as session:
        row = await session.scalar(
            select(LoginSession).where(LoginSession.token_hash == security.sha256_hex(token))
        )
    assert row is None
    async with client_for(app, cookies={"cogumi_session": token}) as replay:
        assert (await replay.get("/api/me")).status_code == 401


async def test_logout_when_signed_out_is_harmless(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/auth/logout")).status_code == 204


async def test_logout_needs_csrf_header(accounts: Accounts) -> None:
    owner = await accounts.signup()
    del owner.client.headers["X-CSRF-Token"]
    response = await owner.client.post("/api/auth/logout")
    assert response.status_code == 403
    assert (await owner.client.get("/api/me")).status_code == 200


def _backend_settings(backend: str) -> dict[str, object]:
    """Settings for a limit of 3 on ``backend``, Redis keys under a fresh prefix.

    Windows are aligned to the clock; an hour-long one keeps a boundary from
    falling inside a test.
    """
    values: dict[str, object] = {"login_rate_limit": 3, "login_rate_window_sec": 3600}
    if backend == "redis":
        values.update(redis_url=REDIS_URL, redis_key_prefix=f"test-{uuid.uuid4().hex}:")
    return values


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    body = response.json()
    assert body["error"] == "rate_limited"
    assert body["retry_after"] == retry_after
    assert body["message"]


def _login(email: str, password: str = "wrong password!!") -> dict[str, str]:
    return {"email": email, "password": password}


@pytest.mark.parametrize("limiter", ["memory", "redis"])
async def test_login_limited_per_address(custom_app: AppFactory, limiter: str) -> None:
    async with custom_app(**_backend_settings(limiter)) as app, client_for(app, "10.9.0.1") as c:
        for _ in range(3):
            response = await c.post("/api/auth/login", json=_login(unique_email()))
            assert response.status_code == 401
        assert_rate_limited(await c.post("/api/auth/login", json=_login(unique_email())))
        # Another address is unaffected.
        async with client_for(app, "10.9.0.2") as other:
            response = await other.post("/api/auth/login", json=_login(unique_email()))
            assert response.status_code == 401


@pytest.mark.parametrize("limiter", ["memory", "redis"])
async def test_login_limited_per_email_across_addresses(
    custom_app: AppFactory, accounts: Accounts, limiter: str
) -> None:
    owner = await accounts.signup()
    async with custom_app(**_backend_settings(limiter)) as app:
        for n in range(3):
            async with client_for(app, f"10.8.0.{n}") as c:
                response = await c.post("/api/auth/login", json=_login(owner.email.upper()))
                assert response.status_code == 401
        async with client_for(app, "10.8.0.99") as c:
            # Even the right password is refused until the window ends.
            assert_rate_limited(await c.post("/api/auth/login", json=_login(owner.email, PASSWORD)))


@pytest.mark.parametrize("limiter", ["memory", "redis"])
async def test_register_is_limited_and_writes_nothing_when_refused(
    custom_app: AppFactory, sessionmaker: async_sessionmaker[AsyncSession], limiter: str
) -> None:
    async with custom_app(**_backend_settings(limiter)) as app, client_for(app, "10.7.0.1") as c:
        for _ in range(3):
            response = await c.post(
                "/api/auth/register", json={"email": unique_email(), "password": PASSWORD}
            )
            assert response.status_code == 201
            c.cookies.clear()
        email = unique_email()
        refused = await c.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert_rate_limited(refused)
    async with sessionmaker() as session:
        assert await session.scalar(select(User).where(User.email == email)) is None


async def test_redis_counts_are_shared_between_processes_and_hide_emails(
    custom_app: AppFactory,
) -> None:
    """Two app instances on one Redis (two `serve` processes) share one count."""
    overrides = _backend_settings("redis")
    email = unique_email()
    async with custom_app(**overrides) as first, custom_app(**overrides) as second:
        for app in (first, second, first):
            async with client_for(app, "10.6.0.1") as c:
                assert (await c.post("/api/auth/login", json=_login(email))).status_code == 401
        async with client_for(second, "10.6.0.1") as c:
            assert_rate_limited(await c.post("/api/auth/login", json=_login(email)))
    redis = Redis.from_url(REDIS_URL)
    try:
        every = [
            k.decode() async for k in redis.scan_iter(match=f"{overrides['redis_key_prefix']}*")
        ]
        assert not any(email in key for key in every)
        # The apps also run a queue under the same prefix; count the rate-limit counters.
        keys = [k for k in every if ":rl:" in k]
        assert len(keys) == 2
        ttls = [await redis.ttl(key) for key in keys]
        assert all(0 < ttl <= 3601 for ttl in ttls)
    finally:
        await redis.aclose()


async def test_memory_limiter_window_resets() -> None:
    now = [1_000.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    assert await limiter.hit("k", limit=2, window_sec=60) is None
    assert await limiter.hit("k", limit=2, window_sec=60) is None
    assert await limiter.hit("k", limit=2, window_sec=60) == 20  # window ends at 1020
    now[0] = 1_020.5
    assert await limiter.hit("k", limit=2, window_sec=60) is None


async def test_redis_limiter_counts_per_key() -> None:
    limiter = RedisRateLimiter(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}:")
    try:
        assert await limiter.hit("a", limit=1, window_sec=30) is None
        wait = await limiter.hit("a", limit=1, window_sec=30)
        assert wait is not None and 1 <= wait <= 30
        assert await limiter.hit("b", limit=1, window_sec=30) is None
    finally:
        await limiter.close()
