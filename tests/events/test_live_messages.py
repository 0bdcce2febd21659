"""Notifications carry the committed messages: an up-to-date stream sends them without
reading the table, a gap sends it back to the table, and Redis carries them between
processes (old bare run-id notifications still wake)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import event

from cogumi.events.bus import MAX_CARRIED_BYTES, LiveMessage, RedisBus
from tests.events.conftest import REDIS_URL
from tests.events.test_stream import make_run, publish, sse_items, take
from tests.factories import Accounts
from tests.servers import serve_app


async def test_a_stream_sends_what_the_bus_carries_and_the_table_decides_on_a_gap(
    app: Any, accounts: Accounts
) -> None:
    owner = await accounts.signup()
    run_id = await make_run(accounts, owner.org_id)
    await publish(app, owner.org_id, run_id, "story.step.created", {"n": 1})
    reads: list[str] = []

    def count_reads(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "stream_messages" in statement:
            reads.append(statement)

    engine = app.state.engine.sync_engine
    async with (
        serve_app(app) as base,
        httpx.AsyncClient(base_url=base, cookies=dict(owner.client.cookies)) as http,
        http.stream("GET", f"/api/runs/{run_id}/stream") as response,
    ):
        items = sse_items(response)
        assert [i["id"] for i in await take(items, 1)] == ["1"]  # the backlog, from the table
        event.listen(engine, "before_cursor_execute", count_reads)
        try:
            await publish(app, owner.org_id, run_id, "finding.created", {"title": "leak"})
            (live,) = await take(items, 1)
            assert live == {"id": "2", "event": "finding.created", "data": '{"title": "leak"}'}
            assert reads == []  # sent as the notification carried it
            # Out of sequence (3 to 8 never seen): not sent; the stream reads the table.
            await app.state.live_bus.notify(run_id, [LiveMessage(9, "quota.warning", {})])
            async with asyncio.timeout(10):
                while not reads:
                    await asyncio.sleep(0.01)
            await publish(app, owner.org_id, run_id, "story.step.created", {"n": 3})
            (following,) = await take(items, 1)
            assert (following["id"], json.loads(following["data"])) == ("3", {"n": 3})
        finally:
            event.remove(engine, "before_cursor_execute", count_reads)


async def test_redis_carries_messages_between_processes_and_old_wakeups_still_wake() -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    publisher, subscriber = RedisBus(REDIS_URL, prefix=prefix), RedisBus(REDIS_URL, prefix=prefix)
    await publisher.start()
    await subscriber.start()
    raw = Redis.from_url(REDIS_URL)
    run_id = uuid.uuid4()
    try:
        async with subscriber.subscribe(run_id) as subscription:
            message = LiveMessage(1, "quota.warning", {"percent": 80.0, "name": "ünï"})
            async with asyncio.timeout(10):
                while not subscription.messages:  # until the listener has subscribed
                    await publisher.notify(run_id, [message])
                    await asyncio.sleep(0.05)
            assert subscription.messages[0] == message
            subscription.messages.clear()
            subscription.clear()
            await raw.publish(f"{prefix}live", run_id.hex)  # what older processes send
            async with asyncio.timeout(5):
                await subscription.wait()
            assert not subscription.messages
            subscription.clear()
            heavy = LiveMessage(2, "finding.created", {"text": "x" * MAX_CARRIED_BYTES})
            await publisher.notify(run_id, [heavy])  # too heavy: wakes, carries nothing
            async with asyncio.timeout(5):
                await subscription.wait()
            assert not subscription.messages
    finally:
        await raw.aclose()
        await publisher.close()
        await subscriber.close()
