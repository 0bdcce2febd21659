"""The grouping of one run's concurrent batches (PostgreSQL fast path), on its own.

``_RunGroups`` is pure asyncio: these tests drive it with a stand-in connection
whose ``write_group`` answers each batch after a pause, to check the hand-overs
that concurrency and cancellation make: every batch answered exactly once, a
group written on the leading request's connection and never after that request
returned, a leader that was cancelled first passing the lead on.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from cogumi.events.ingest_fast import GROUP_MAX_BATCHES, _Pending, _RunGroups
from cogumi.events.schemas import IngestResult

RUN = uuid.uuid4()


@dataclass
class Target:
    run_id: uuid.UUID = RUN
    named: bool = False


@dataclass
class Prepared:
    batch_id: str
    rows: list[int] = field(default_factory=lambda: [1])


@dataclass
class Conn:
    """Stands in for a request's connection; records the groups it wrote."""

    name: str
    pause: float = 0.02
    groups: list[list[str]] = field(default_factory=list)
    busy: bool = False

    async def write_group(self, group: list[_Pending]) -> None:
        self.busy = True
        await asyncio.sleep(self.pause)
        self.groups.append([item.prepared.batch_id for item in group])
        for item in group:
            item.answer(IngestResult(ok=True, accepted=len(item.prepared.rows), dropped=0))
        self.busy = False


def pending(batch_id: str) -> _Pending:
    return _Pending(cast(Any, None), cast(Any, Prepared(batch_id)), cast(Any, Target()))


async def send(groups: _RunGroups, conn: Conn, batch_id: str) -> IngestResult | None:
    result = await groups.write(cast(Any, conn), pending(batch_id))
    assert not conn.busy, "answered while its connection still writes a group"
    return result


async def test_batches_arriving_during_a_write_form_the_next_groups() -> None:
    count = 2 * GROUP_MAX_BATCHES + 2
    groups, conns = _RunGroups(), [Conn(f"c{i}") for i in range(count)]
    first = asyncio.ensure_future(send(groups, conns[0], "b0"))
    await asyncio.sleep(0.005)  # b0 is being written; the rest wait and go in full groups
    rest = [asyncio.ensure_future(send(groups, conns[i], f"b{i}")) for i in range(1, count)]
    results = await asyncio.gather(first, *rest)
    assert all(r is not None and r.accepted == 1 for r in results)
    written = [g for c in conns for g in c.groups]
    assert written[0] == ["b0"]
    assert [len(g) for g in written[1:]] == [GROUP_MAX_BATCHES, GROUP_MAX_BATCHES, 1]
    assert sorted(b for g in written[1:] for b in g) == sorted(f"b{i}" for i in range(1, count))
    assert not groups._waiting and not groups._writing  # nothing left behind


async def test_a_group_holds_each_batch_id_once_and_at_most_the_maximum() -> None:
    groups = _RunGroups()
    busy = asyncio.ensure_future(send(groups, Conn("lead"), "x"))
    await asyncio.sleep(0.005)
    conns = [Conn(f"c{i}") for i in range(GROUP_MAX_BATCHES + 3)]
    ids = ["same", "same", *[f"b{i}" for i in range(GROUP_MAX_BATCHES + 1)]]
    await asyncio.gather(busy, *[send(groups, c, b) for c, b in zip(conns, ids, strict=True)])
    written = [g for c in conns for g in c.groups]
    assert all(len(g) <= GROUP_MAX_BATCHES and len(set(g)) == len(g) for g in written)
    assert sorted(b for g in written for b in g) == sorted(ids)


async def test_a_cancelled_leader_still_finishes_its_group_before_letting_go() -> None:
    groups = _RunGroups()
    lead_conn = Conn("lead", pause=0.1)
    lead = asyncio.ensure_future(groups.write(cast(Any, lead_conn), pending("b0")))
    await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(send(groups, Conn(f"c{i}"), f"b{i}")) for i in range(1, 4)]
    await asyncio.sleep(0.01)
    lead.cancel()
    await asyncio.sleep(0.02)
    assert not lead.done() and lead_conn.busy  # holds on: its connection is still in use
    try:
        await lead
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancellation was swallowed")
    assert lead_conn.groups == [["b0"]] and not lead_conn.busy
    assert all(r is not None for r in await asyncio.gather(*waiting))


async def test_a_waiting_batch_cancelled_after_being_told_to_lead_passes_the_lead_on() -> None:
    groups = _RunGroups()
    lead = asyncio.ensure_future(send(groups, Conn("lead", pause=0.05), "b0"))
    await asyncio.sleep(0.01)
    doomed = asyncio.ensure_future(groups.write(cast(Any, Conn("doomed")), pending("b1")))
    await asyncio.sleep(0)
    after = asyncio.ensure_future(send(groups, Conn("after"), "b2"))
    await asyncio.sleep(0)
    hand_on = groups._hand_on

    def hand_on_then_cancel(run_id: uuid.UUID) -> None:
        """The lead group ends and b1 is told to lead; it is cancelled before it runs."""
        hand_on(run_id)
        if not doomed.done():
            doomed.cancel()

    groups._hand_on = hand_on_then_cancel  # type: ignore[method-assign]
    assert (await lead) is not None
    result = await asyncio.wait_for(after, 2)  # b2 took the lead: nothing hangs
    assert result is not None and result.accepted == 1
    assert doomed.cancelled()
    assert not groups._waiting and not groups._writing
