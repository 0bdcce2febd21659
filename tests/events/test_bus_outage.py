"""The Redis live bus through a Redis outage (a real redis-server, stopped and started).

Publishing while Redis is down never raises and is logged once, not once per
message; when Redis is back the subscriber's listener has re-subscribed by
itself and wake-ups cross processes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from cogumi.events.bus import RedisBus
from tests.ops.services import ThrowawayRedis

pytestmark = pytest.mark.e2e


async def _woken(publisher: RedisBus, wake: asyncio.Event, run_id: uuid.UUID) -> bool:
    """One notify; whether the subscriber heard it within a second."""
    wake.clear()
    await publisher.notify(run_id)
    try:
        async with asyncio.timeout(1):
            await wake.wait()
    except TimeoutError:
        return False
    return True


async def test_wakeups_cross_processes_again_after_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cogumi.events.bus")
    run_id = uuid.uuid4()
    with ThrowawayRedis() as server:
        # Two buses stand for two processes: the publisher's local fan-out cannot reach
        # the subscriber's, so only Redis carries the wake-up.
        publisher, subscriber = RedisBus(server.url), RedisBus(server.url)
        await publisher.start()
        await subscriber.start()
        try:
            async with subscriber.subscribe(run_id) as wake:
                deadline = time.monotonic() + 10
                while not await _woken(publisher, wake, run_id):  # until subscribed
                    assert time.monotonic() < deadline, "no wake-up through Redis"

                await asyncio.to_thread(server.stop)
                for _ in range(20):
                    await publisher.notify(run_id)  # never raises
                failing = [
                    r.getMessage() for r in caplog.records if "cannot publish" in r.getMessage()
                ]
                assert len(failing) == 1

                await asyncio.to_thread(server.start)
                deadline = time.monotonic() + 20
                while not await _woken(publisher, wake, run_id):
                    assert time.monotonic() < deadline, "the subscriber never re-subscribed"
        finally:
            await publisher.close()
            await subscriber.close()
    messages = [r.getMessage() for r in caplog.records]
    assert "live bus publishes again" in messages
    assert any("live bus lost Redis" in m for m in messages)
