"""The Redis rate limiter through a Redis outage (a real redis-server, stopped and started).

While Redis is down the limiter counts in the process (limits still hold, per
process) instead of failing the request; once Redis answers again the count
is shared through Redis once more.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from cogumi.tenancy.ratelimit import RETRY_REDIS_SEC, RedisRateLimiter
from tests.ops.services import ThrowawayRedis

pytestmark = pytest.mark.e2e


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_limits_hold_through_a_redis_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cogumi.tenancy.ratelimit")
    clock = Clock()
    with ThrowawayRedis() as server:
        one = RedisRateLimiter(server.url, prefix="rl-test:", clock=clock)
        two = RedisRateLimiter(server.url, prefix="rl-test:", clock=clock)
        try:
            # Shared through Redis: two processes' hits add up.
            assert await one.hit("k", limit=3, window_sec=60, cost=2) is None
            assert await two.hit("k", limit=3, window_sec=60) is None
            assert await one.hit("k", limit=3, window_sec=60) is not None

            await asyncio.to_thread(server.stop)
            assert await one.hit("down", limit=2, window_sec=60) is None  # no error
            assert await one.hit("down", limit=2, window_sec=60) is None
            assert await one.hit("down", limit=2, window_sec=60) is not None  # still limited
            assert await two.hit("down", limit=2, window_sec=60) is None  # its own count
            lost = [r.getMessage() for r in caplog.records]
            assert len(lost) == 2 and all("unreachable" in m for m in lost)  # once each

            await asyncio.to_thread(server.start)
            # Within the retry pause it keeps counting locally, without touching Redis.
            assert await one.hit("down", limit=2, window_sec=60) is not None
            clock.now += RETRY_REDIS_SEC + 0.1
            assert await one.hit("back", limit=2, window_sec=60, cost=2) is None
            assert await two.hit("back", limit=2, window_sec=60) is not None  # shared again
            assert "counted in Redis again" in caplog.records[-1].getMessage()
        finally:
            await one.close()
            await two.close()
