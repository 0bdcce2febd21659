"""Admitted exchanges have their events built in runs: soon, in order, every one
counted. (What the events hold is tests/sidecar/test_core.py's business.)"""

from __future__ import annotations

import asyncio
from typing import Any

from cogumi.sidecar.core import Exchange, Policy, exchange_event
from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.shipper import BUILD_BATCH, BUILD_DELAY_SEC, Shipper
from tests.sidecar.test_core import POLICY, SECRET


def _shipper(**options: Any) -> Shipper:
    return Shipper(SidecarOptions(ingest_url="http://127.0.0.1:9", token="t", project_id="p", **options))  # fmt: skip


def _exchange(n: int) -> Exchange:
    return Exchange(
        method="POST", host="api.example.com", port=80, path=f"/items/{n}", ts=1000.0 + n,
        request_headers=[("Authorization", f"Bearer {SECRET}")], status_code=201,
    )  # fmt: skip


def _paths(shipper: Shipper) -> list[str]:
    return [e["destination"]["path"] for _, e in shipper.buffer if isinstance(e, dict) and e]


async def test_events_are_built_soon_in_runs_and_in_order() -> None:
    shipper = _shipper()
    for n in range(3):
        shipper.submit(_exchange(n), POLICY)
    assert len(shipper.buffer) == 3 and _paths(shipper) == []  # waiting for the run
    assert shipper.next_watermark(now=2000.0) == 1000.0  # waiting ones hold the watermark
    await asyncio.sleep(BUILD_DELAY_SEC + 0.1)
    assert _paths(shipper) == ["/items/0", "/items/1", "/items/2"]

    for n in range(3, 3 + BUILD_BATCH):  # a full run is built at once, no waiting
        shipper.submit(_exchange(n), POLICY)
    assert _paths(shipper) == [f"/items/{n}" for n in range(3 + BUILD_BATCH)]
    events = [e for _, e in shipper.buffer]
    assert all(SECRET not in str(e) for e in events)  # redacted, as when built one by one
    assert events[0] == exchange_event(_exchange(0), POLICY) | {"http": events[0]["http"]}


async def test_an_event_of_the_sidecars_own_keeps_its_place() -> None:
    """The throttle's policy.violation comes after the events admitted before it."""
    shipper = _shipper(throttle_per_window=2)
    for n in range(3):
        shipper.submit(_exchange(n), POLICY)
    kinds = [e["type"] for _, e in shipper.buffer]
    assert kinds == ["request", "request", "policy.violation"]
    assert shipper.counters.dropped["throttled"] == 1


async def test_an_event_that_fails_to_build_is_counted_and_the_rest_go_on() -> None:
    shipper = _shipper()

    def build(ex: Exchange, policy: Policy) -> dict[str, Any]:
        if ex.path == "/items/1":
            raise ValueError("cannot build this one")
        return exchange_event(ex, policy)

    for n in range(3):
        shipper.submit(_exchange(n), POLICY, build)
    shipper.build_pending()
    assert _paths(shipper) == ["/items/0", "/items/2"]
    assert shipper.counters.dropped["build_failed"] == 1
    assert shipper.queued == 2
