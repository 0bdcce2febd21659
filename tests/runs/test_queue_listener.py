"""The worker's run-queue listener against a real redis-server of the test's own.

An idle queue is not an error (the listener used to block in ``BRPOP`` until
the client's socket timeout, then escape and restart its receiver), and a
Redis outage is waited out with back-off, logged once, then jobs flow again
without anyone restarting the worker; and stopping the worker stops the
listener at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from redis.asyncio import Redis

from cogumi.runs.queue import RunJobBroker, RunQueue
from cogumi.tasks import spawn
from tests.ops.services import ThrowawayRedis

pytestmark = pytest.mark.e2e


def _queue_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cogumi.runs.queue" and r.levelno >= logging.WARNING]  # fmt: skip


async def test_an_idle_queue_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with ThrowawayRedis() as server:
        # A short client read timeout: idling past it used to end the listener.
        broker = RunJobBroker(server.url, queue_name="jobs", socket_timeout=1)
        broker.poll_sec = 0.3
        listener = broker.listen()
        first = asyncio.ensure_future(anext(listener))
        try:
            await asyncio.sleep(2.5)
            assert not first.done(), first.exception() if first.done() else None
            client = Redis.from_url(server.url)
            await client.lpush("jobs", b"job-1")
            await client.aclose()
            assert await asyncio.wait_for(first, timeout=10) == b"job-1"
        finally:
            first.cancel()
            await listener.aclose()
            await broker.shutdown()
    assert _queue_warnings(caplog) == []


async def test_jobs_flow_again_after_a_redis_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cogumi.runs.queue")
    received: list[str] = []
    arrived = asyncio.Event()

    async def handler(run_id: str) -> None:
        received.append(run_id)
        arrived.set()

    with ThrowawayRedis() as server:
        broker = RunJobBroker(server.url, queue_name="jobs", socket_connect_timeout=1)
        broker.poll_sec = 0.3
        queue = RunQueue(broker)
        queue.register(handler)
        await queue.startup()
        listening = spawn(queue.listen(), name="test-listener")
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(3)  # Redis is gone for a while
            assert not listening.done()
            lost = [m for m in _queue_warnings(caplog) if "lost Redis" in m]
            assert len(lost) == 1, _queue_warnings(caplog)  # said once, no tight retry loop
            await asyncio.to_thread(server.start)
            run_id = uuid.uuid4()
            await queue.enqueue(run_id)  # the sending side reconnects by itself too
            await asyncio.wait_for(arrived.wait(), timeout=15)
            # Stopping the worker stops the listener, even mid-poll (redis-py may swallow
            # a cancellation that lands in a blocking command).
            listening.cancel()
            await asyncio.wait_for(asyncio.gather(listening, return_exceptions=True), timeout=10)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await queue.shutdown()
    assert received == [str(run_id)]
    assert any("reconnected to Redis" in m for m in _queue_warnings(caplog))
