"""Live bus: wakes up SSE streams when a run's stream gets new messages.

A notification says "run X has news" and carries the new messages themselves
(seq, kind, data), so a stream that is up to date sends them at once, without
reading the database. Messages are still rows in ``stream_messages`` (see
:mod:`cogumi.events.stream`): a stream that finds a gap (it missed a
notification, or they crossed between processes) reads the table instead, so
a lost wake-up costs latency, never a message; every stream also re-reads the
table on a slow timer. Two backends behind one interface:

- :class:`MemoryBus` for the embedded mode (one process);
- :class:`RedisBus` for scale-out: Redis pub/sub, so a client connected to any
  API process hears what any worker or API process wrote. When Redis is down
  it logs, keeps serving (streams fall back to the timer) and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cogumi.tasks import spawn

log = logging.getLogger(__name__)


# A notification heavier than this carries only the run id (readers use the table).
MAX_CARRIED_BYTES = 32 * 1024
# Messages a subscriber keeps for a stream that is slow to send them; past it the
# oldest go and the stream notices the gap (and reads the table).
SUBSCRIBER_BUFFER = 1000


@dataclass(frozen=True)
class LiveMessage:
    """One committed stream message, as the bus carries it."""

    seq: int
    kind: str
    data: dict[str, Any]


class Subscription(asyncio.Event):
    """A stream's end of the bus: set on every notification for its run (the
    subscriber clears it); ``messages`` holds what the notifications carried."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: deque[LiveMessage] = deque(maxlen=SUBSCRIBER_BUFFER)

    def deliver(self, messages: Sequence[LiveMessage]) -> None:
        self.messages.extend(messages)
        self.set()


class LiveBus(Protocol):
    async def notify(self, run_id: uuid.UUID, messages: Sequence[LiveMessage] = ()) -> None:
        """Tell every subscriber of ``run_id`` (in every process) about ``messages``,
        committed, in seq order (none: only that there is news)."""
        ...

    def subscribe(self, run_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """A subscription to ``run_id``'s notifications."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class _LocalFanout:
    """Per-process subscribers: run id -> the subscriptions of its open streams."""

    def __init__(self) -> None:
        self._subscribers: dict[uuid.UUID, set[Subscription]] = defaultdict(set)

    def wake(self, run_id: uuid.UUID, messages: Sequence[LiveMessage] = ()) -> None:
        for subscription in self._subscribers.get(run_id, ()):
            subscription.deliver(messages)

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: uuid.UUID) -> AsyncIterator[Subscription]:
        subscription = Subscription()
        self._subscribers[run_id].add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(run_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[run_id]


class MemoryBus:
    """In-process bus for the embedded mode."""

    def __init__(self) -> None:
        self._fanout = _LocalFanout()

    async def notify(self, run_id: uuid.UUID, messages: Sequence[LiveMessage] = ()) -> None:
        self._fanout.wake(run_id, messages)

    def subscribe(self, run_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[Subscription]:
        return self._fanout.subscribe(run_id)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisBus:
    """Redis pub/sub on one channel per deployment; the payload is the JSON
    ``{"run": <hex>, "messages": [[seq, kind, data], ...]}`` (or the bare run id in
    hex, which older processes send and every process still understands)."""

    def __init__(self, url: str, *, prefix: str = "cogumi:") -> None:
        self._redis: Redis = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._channel = f"{prefix}live"
        self._fanout = _LocalFanout()
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._publish_failing = False  # log a failing publish once per outage, not per call

    async def start(self) -> None:
        self._listener = spawn(self._listen(), name="live-bus-listener")

    async def notify(self, run_id: uuid.UUID, messages: Sequence[LiveMessage] = ()) -> None:
        # Local subscribers are woken directly, so this process never depends on Redis
        # for its own writes; others hear it through Redis.
        self._fanout.wake(run_id, messages)
        try:
            await self._redis.publish(self._channel, _encode(run_id, messages))
        except (RedisError, OSError) as exc:
            if not self._publish_failing:
                log.warning("live bus cannot publish (streams catch up on their timer): %s", exc)
            self._publish_failing = True
            return
        if self._publish_failing:
            log.warning("live bus publishes again")
            self._publish_failing = False

    def subscribe(self, run_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[Subscription]:
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
            data = data.decode("utf-8", "ignore")
        if not isinstance(data, str):
            return
        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
            if not data.startswith("{"):
                self._fanout.wake(uuid.UUID(hex=data))
                return
            payload = json.loads(data)
            messages = [LiveMessage(int(s), str(k), dict(d)) for s, k, d in payload["messages"]]
            self._fanout.wake(uuid.UUID(hex=payload["run"]), messages)

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


def _encode(run_id: uuid.UUID, messages: Sequence[LiveMessage]) -> str:
    """The Redis payload; messages too heavy to carry are left to the table."""
    carried = [[m.seq, m.kind, m.data] for m in messages]
    try:
        payload = json.dumps({"run": run_id.hex, "messages": carried}, separators=(",", ":"))
    except (TypeError, ValueError):
        payload = ""
    if not payload or len(payload) > MAX_CARRIED_BYTES:
        return json.dumps({"run": run_id.hex, "messages": []})
    return payload


async def make_bus(redis_url: str | None, prefix: str) -> LiveBus:
    if redis_url:
        bus = RedisBus(redis_url, prefix=prefix)
        await bus.start()
        return bus
    return MemoryBus()
