"""The sidecar's watermark: never past an exchange still in flight or an event
still buffered, and refreshed while idle only as often as the API asks."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx

from cogumi.sidecar.core import Exchange
from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.shipper import Shipper
from cogumi.tasks import spawn
from tests.sidecar.conftest import SidecarFactory, proxy_url
from tests.sidecar.servers import Ingest, Origin, Served
from tests.sidecar.test_core import POLICY


def instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def assert_watermarks_hold(received: list[dict[str, Any]]) -> None:
    """For every batch: each event that started before its watermark is in it or earlier."""
    first_batch_of = {}
    for index, body in enumerate(received):
        for event in body["events"]:
            first_batch_of.setdefault(id(event), (index, instant(event["ts"])))
    previous = None
    for index, body in enumerate(received):
        mark = instant(body["watermark"])
        assert previous is None or mark >= previous, "the watermark moved back"
        previous = mark
        late = [i for i, ts in first_batch_of.values() if ts < mark and i > index]
        assert not late, f"batch {index} claimed completeness before batches {late}"


async def test_watermark_waits_for_a_slow_exchange(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    recorder.run_active = True
    base = origin[1].url
    async with (
        make_sidecar(batch_flush_ms=20) as sidecar,
        httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as agent,
    ):
        slow = spawn(agent.get(f"{base}/slow"))  # 1.5 s upstream
        await asyncio.sleep(0.2)
        for i in range(5):
            assert (await agent.get(f"{base}/fast{i}")).status_code == 200
        await asyncio.sleep(0.6)  # fast events shipped, more watermark-only batches
        during = list(recorder.received)
        assert (await slow).status_code == 200
        slow_event = next(
            e for e in await recorder.wait_events(6) if e["destination"]["path"] == "/slow"
        )
        await asyncio.sleep(0.3)
        after = list(recorder.received)
    started = instant(slow_event["ts"])
    assert len(during) >= 5, "watermark-only batches keep coming during a run"
    assert all(instant(b["watermark"]) <= started for b in during)
    fast = [e for b in during for e in b["events"]]
    assert sorted(e["destination"]["path"] for e in fast) == [f"/fast{i}" for i in range(5)]
    # Once the slow exchange is shipped, the watermark passes its start.
    assert instant(after[-1]["watermark"]) > started
    assert_watermarks_hold(after)


async def test_idle_watermark_follows_run_activity(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar(batch_flush_ms=40, heartbeat_interval=0.5):
        await asyncio.sleep(1.6)
        idle = [b for b in recorder.received if not b["events"]]
        recorder.run_active = True  # the next heartbeat answer says a campaign runs
        await asyncio.sleep(0.7)  # heard by then
        start = len(recorder.received)
        await asyncio.sleep(1.0)
        active = recorder.received[start:]
    assert 1 <= len(idle) <= 5, "once per heartbeat interval without a run"
    assert len(active) >= 12, f"about every batch_flush_ms during a run, got {len(active)}"
    marks = [instant(b["watermark"]) for b in active]
    assert marks == sorted(marks) and marks[-1] > marks[0]
    assert all(not b["events"] for b in active)


def test_buffered_and_open_exchanges_hold_the_watermark() -> None:
    shipper = Shipper(SidecarOptions(ingest_url="http://127.0.0.1:9", token="t", project_id="p"))
    slow = Exchange(method="GET", host="a.example", port=80, path="/slow", ts=100.0)
    fast = Exchange(method="GET", host="a.example", port=80, path="/fast", ts=101.0)
    shipper.opened(slow)
    shipper.opened(fast)
    assert shipper.next_watermark(now=105.0) == 100.0
    shipper.submit(fast, POLICY)
    assert shipper.next_watermark(now=106.0) == 100.0  # slow still open
    shipper.submit(slow, POLICY)
    assert shipper.open_exchanges == {}
    assert shipper.next_watermark(now=107.0) == 100.0  # both still in the buffer
    shipper.buffer.popleft()  # cut into a batch: what remains holds it
    assert shipper.next_watermark(now=107.0) == 100.0  # slow (start 100) still buffered
    shipper.buffer.popleft()
    assert shipper.next_watermark(now=108.0) == 108.0
    assert shipper.next_watermark(now=90.0) == 108.0  # never moves back
