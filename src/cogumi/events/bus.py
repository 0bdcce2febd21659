"""Live bus: wakes up SSE streams when a run's stream gets a new message.

The bus carries no data, only "run X has something new". Messages themselves
are rows in ``stream_messages`` (see :mod:`cogumi.events.stream`), so a lost
wake-up costs latency, never a message: every stream also re-reads the table
on a slow timer. Two backends behind one interface:

- :class:`MemoryBus` for the embedded mode (one process);
- :class:`RedisBus` for scale-out: Redis pub/sub, so a client connected to any
  API process hears what any worker or API process wrote. When Redis is down
  it logs, keeps serving (streams fall back to the timer) and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cogumi.tasks import spawn

log = logging.getLogger(__name__)


class LiveBus(Protocol):
    async def notify(self, run_id: uuid.UUID) -> None:
        """Tell every subscriber of ``run_id`` (in every process) to re-read."""
        ...

    def subscribe(self, run_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """An event set whenever ``run_id`` is notified (the subscriber clears it)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class _LocalFanout:
    """Per-process subscribers: run id -> the asyncio.Events of its open streams."""

    def __init__(self) -> None:
        self._subscribers: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    def wake(self, run_id: uuid.UUID) -> None:
        for event in self._subscribers.get(run_id, ()):
            event.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers[run_id].add(event)
        try:
            yield event
        finally:
            subscribers = self._subscribers.get(run_id)
            if subscribers is not None:
                subscribers.discard(event)
                if not subscribers:
                    del self._subscribers[run_id]


class MemoryBus:
    """In-process bus for the embedded mode."""

    def __init__(self) -> None:
        self._fanout = _LocalFanout()

    async def notify(self, run_id: uuid.UUID) -> None:
        self._fanout.wake(run_id)

    def subscribe(self, run_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._fanout.subscribe(run_id)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisBus:
    """Redis pub/sub on one channel per deployment; payload is the run id."""

    def __init__(self, url: str, *, prefix: str = "cogumi:") -> None:
        self._redis: Redis = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._channel = f"{prefix}live"
        self._fanout = _LocalFanout()
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._publish_failing = False  # log a failing publish once per outage, not per call

    async def start(self) -> None:
        self._listener = spawn(self._listen(), name="live-bus-listener")

    async def notify(self, run_id: uuid.UUID) -> None:
        # Local subscribers are woken directly, so this process never depends on Redis
        # for its own writes; others hear it through Redis.
        self._fanout.wake(run_id)
        try:
            await self._redis.publish(self._channel, run_id.hex)
        except (RedisError, OSError) as exc:
            if not self._publish_failing:
                log.warning("live bus cannot publish (streams catch up on their timer): %s", exc)
            self._publish_failing = True
            return
        if self._publish_failing:
            log.warning("live bus publishes again")
            self._publish_failing = False

    def subscribe(self, run_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._fanout.subscribe(run_id)

    async def _listen(self) -> None:
        delay = 0.5
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                delay = 0.5
                async for message in pubsub.listen():
                    self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("live bus lost Redis (%s); reconnecting in %.1fs", exc, delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, data: object) -> None:
        if isinstance(data, bytes):
            data = data.decode("ascii", "ignore")
        if isinstance(data, str):
            with contextlib.suppress(ValueError):
                self._fanout.wake(uuid.UUID(hex=data))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._redis.aclose()


async def make_bus(redis_url: str | None, prefix: str) -> LiveBus:
    if redis_url:
        bus = RedisBus(redis_url, prefix=prefix)
        await bus.start()
        return bus
    return MemoryBus()
