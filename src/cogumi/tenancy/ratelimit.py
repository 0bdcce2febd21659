"""Fixed-window rate limits for sign-in, sign-up and event ingest.

Two backends share one small interface and are chosen once at app start:
in-process counters for the embedded mode (one server process), and Redis
(``INCR`` + ``EXPIRE``) when several ``serve`` processes stand behind a load
balancer and must share one count. Windows are aligned to wall-clock
multiples of the window length, so every process agrees on when one ends.

While Redis is unreachable the Redis limiter counts in this process instead
(each process then enforces the limit on its own share), so sign-in and
ingest keep working through a Redis outage; it goes back to Redis by itself.

Keys never hold an email address in clear: it is hashed first, so a Redis
dump does not list who tried to sign in.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cogumi.config import Settings
from cogumi.errors import TooManyRequests
from cogumi.tenancy import security

_PURGE_AT = 10_000
RETRY_REDIS_SEC = 1.0
"""While Redis is down, how long the limiter counts locally before trying Redis again."""

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window_sec: int, cost: int = 1) -> int | None:
        """Count ``cost`` units on ``key``; seconds to wait if it went over ``limit``, else None.

        ``cost`` weights one call, e.g. by the number of events in an ingest batch.
        """
        ...

    async def close(self) -> None: ...


def _window(now: float, window_sec: int) -> tuple[int, int]:
    """The current window's index and the whole seconds left until it ends (at least 1)."""
    index = int(now // window_sec)
    left = math.ceil((index + 1) * window_sec - now)
    return index, max(1, left)


class MemoryRateLimiter:
    """Counters in this process only: right for the embedded mode, wrong behind a balancer."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str, *, limit: int, window_sec: int, cost: int = 1) -> int | None:
        index, left = _window(self._clock(), window_sec)
        if len(self._counts) >= _PURGE_AT:
            self._purge(index)
        seen_index, count = self._counts.get(key, (index, 0))
        count = count + cost if seen_index == index else cost
        self._counts[key] = (index, count)
        return left if count > limit else None

    def _purge(self, index: int) -> None:
        """Drop counters of finished windows so memory stays bounded."""
        self._counts = {k: v for k, v in self._counts.items() if v[0] >= index}

    async def close(self) -> None:
        self._counts.clear()


class RedisRateLimiter:
    """Counters in Redis, shared by every process that uses the same URL and prefix.

    When Redis fails, counting falls back to this process's own counters for
    :data:`RETRY_REDIS_SEC` at a time; a request never fails because Redis did.
    """

    def __init__(
        self, url: str, *, prefix: str = "cogumi:", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._redis: Redis = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._prefix = prefix
        self._clock = clock
        self._local = MemoryRateLimiter()
        self._local_until: float | None = None  # set while Redis is presumed down

    async def hit(self, key: str, *, limit: int, window_sec: int, cost: int = 1) -> int | None:
        if self._local_until is not None and self._clock() < self._local_until:
            return await self._local.hit(key, limit=limit, window_sec=window_sec, cost=cost)
        try:
            wait = await self._hit_redis(key, limit=limit, window_sec=window_sec, cost=cost)
        except (RedisError, OSError) as exc:
            if self._local_until is None:
                log.warning("rate limits counted per process while Redis is unreachable: %s", exc)
            self._local_until = self._clock() + RETRY_REDIS_SEC
            return await self._local.hit(key, limit=limit, window_sec=window_sec, cost=cost)
        if self._local_until is not None:
            log.warning("rate limits counted in Redis again")
            self._local_until = None
        return wait

    async def _hit_redis(self, key: str, *, limit: int, window_sec: int, cost: int) -> int | None:
        index, left = _window(time.time(), window_sec)
        name = f"{self._prefix}rl:{key}:{index}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, cost)
            pipe.expire(name, left + 1)
            count, _ = await pipe.execute()
        return left if int(count) > limit else None

    async def close(self) -> None:
        await self._local.close()
        await self._redis.aclose()


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when ``redis_url`` is set (scale-out), else in-process counters (embedded)."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, prefix=settings.redis_key_prefix)
    return MemoryRateLimiter()


def auth_keys(*, ip: str, email: str) -> list[str]:
    """One counter per client address and one per (hashed, normalised) email."""
    return [
        f"auth:ip:{ip or 'unknown'}",
        f"auth:email:{security.sha256_hex(email.strip().lower())}",
    ]


async def check_auth_attempt(
    limiter: RateLimiter, settings: Settings, *, ip: str, email: str
) -> None:
    """Count a login or register attempt; 429 with ``Retry-After`` once either counter is over."""
    waits = [
        await limiter.hit(
            key, limit=settings.login_rate_limit, window_sec=settings.login_rate_window_sec
        )
        for key in auth_keys(ip=ip, email=email)
    ]
    over = [wait for wait in waits if wait is not None]
    if over:
        raise TooManyRequests(
            "too many sign-in attempts; wait before trying again", retry_after=max(over)
        )
