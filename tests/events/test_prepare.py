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


def test_sqlite_timestamps_are_the_text_sqlalchemy_would_write() -> None:
    """The ``ts`` text written without SQLAlchemy's processor is the very text it writes,
    whatever the offset, fraction or year."""
    import random
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import DateTime
    from sqlalchemy.dialects.sqlite import aiosqlite

    from cogumi.events.ingest import _sqlite_text, _timestamp

    dialect = aiosqlite.dialect()
    expected = DateTime(timezone=True)._cached_bind_processor(dialect)
    assert expected is not None
    process = _timestamp(dialect)
    assert process.__closure__ is not None
    assert _sqlite_text in [cell.cell_contents for cell in process.__closure__]
    rng = random.Random(7)
    for _ in range(2000):
        moment = datetime.fromtimestamp(rng.uniform(-6e10, 2.5e11), UTC)
        moment = moment.replace(microsecond=rng.choice([0, 1, 500000, rng.randrange(10**6)]))
        zone = timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        for value in (moment, moment.astimezone(zone), moment.replace(tzinfo=None)):
            utc = value.astimezone(UTC) if value.utcoffset() else value
            assert process(value) == expected(utc)
