"""``prepare_stepwise`` (the route's) makes exactly what ``prepare`` makes, in steps."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from cogumi.events.ingest import PREPARE_STEP, parse_batch, prepare, prepare_stepwise
from tests.events.test_fastparse import RECEIVED, REF, body_of, event


async def test_stepwise_preparation_equals_the_one_go_preparation() -> None:
    count = 3 * PREPARE_STEP + 7
    events = [event(payload_redacted={"n": n}) for n in range(count)]
    batch = parse_batch(body_of(*events, watermark="2026-11-27T14:00:01Z"))
    dialect = asyncpg_dialect.dialect()
    yields = 0

    async def count_yields() -> None:
        nonlocal yields
        while True:
            await asyncio.sleep(0)
            yields += 1

    counter = asyncio.ensure_future(count_yields())
    await asyncio.sleep(0)
    stepwise = await prepare_stepwise(batch, dialect=dialect, token=REF, received_at=RECEIVED)
    counter.cancel()
    whole = prepare(batch, dialect=dialect, token=REF, received_at=RECEIVED)
    assert yields >= count // PREPARE_STEP  # the loop got the hand back between steps
    assert [row[1:] for row in stepwise.rows] == [row[1:] for row in whole.rows]
    assert [json.loads(row[20])["n"] for row in stepwise.rows] == list(range(count))
    assert len(set(stepwise.ids)) == count
    for field in ("batch_id", "watermark", "sizes", "types", "timestamps", "payloads"):
        assert getattr(stepwise, field) == getattr(whole, field), field
