"""Event shipping against a real local ingest server: outage and recovery,
overflow counted exactly, throttle windows, auth refusal, Retry-After,
heartbeat counters and project config refresh."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from cogumi import __version__
from tests.sidecar.conftest import SidecarFactory, proxy_url
from tests.sidecar.servers import PROJECT_ID, Ingest, Origin, Served


async def _get_many(sidecar_url: str, url: str, count: int) -> None:
    async with httpx.AsyncClient(proxy=sidecar_url, trust_env=False) as client:
        for i in range(count):
            assert (await client.get(f"{url}/r{i}")).status_code == 200


async def _until(predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_ingest_down_then_back_delivers_everything_buffered(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, served = ingest
    async with make_sidecar(batch_max_events=4) as sidecar:
        await served.stop()
        await _get_many(proxy_url(sidecar), origin[1].url, 10)
        await asyncio.sleep(2.5)  # a few failed attempts while the API is down
        assert sidecar.shipper.counters.ingest_failures >= 1
        assert sidecar.shipper.queued == 10
        await served.restart()
        events = await recorder.wait_events(10, within=15)
        await _until(lambda: sidecar.shipper.queued == 0)
    assert sorted(e["destination"]["path"] for e in events) == sorted(f"/r{i}" for i in range(10))
    assert len({b["batch_id"] for b in recorder.batches}) == len(recorder.batches)
    assert sidecar.shipper.counters.dropped == {}
    assert sidecar.shipper.counters.sent == 10


async def test_buffer_overflow_is_counted_exactly_and_reported(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    recorder.fail_status = 503
    async with make_sidecar(buffer_max_events=5, batch_max_events=2) as sidecar:
        await _get_many(proxy_url(sidecar), origin[1].url, 12)
        assert sidecar.shipper.counters.dropped["buffer_full"] == 7
        recorder.fail_status = None
        events = await recorder.wait_events(5, within=15)
        await _until(lambda: any(
            h["counters"]["dropped"] == {"buffer_full": 7} and h["counters"]["sent"] == 5
            for h in recorder.heartbeats
        ))  # fmt: skip
    assert [e["destination"]["path"] for e in events] == [f"/r{i}" for i in range(5)]
    # every failed attempt reused its batch's id
    assert set(recorder.batch_ids) == {b["batch_id"] for b in recorder.batches}


async def test_throttle_drops_excess_with_one_violation_per_window(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar(throttle_per_window=5, throttle_window_sec=1.5) as sidecar:
        url = proxy_url(sidecar)
        await _get_many(url, origin[1].url, 9)
        events = await recorder.wait_events(6)
        await asyncio.sleep(1.6)
        await _get_many(url, origin[1].url, 8)
        events = await recorder.wait_events(12)
        await asyncio.sleep(0.2)
        dropped = sidecar.shipper.counters.dropped
    violations = [e for e in events if e["type"] == "policy.violation"]
    assert len(violations) == 2
    for violation in violations:
        assert violation["channel"] == "policy"
        assert violation["actor"] == "system"
        assert violation["payload_redacted"]["reason"] == "ingest_throttled"
        assert violation["payload_redacted"]["limit"] == 5
    assert len([e for e in recorder.events if e["type"] == "request"]) == 10
    assert dropped == {"throttled": 4 + 3}


async def test_refused_token_stops_shipping_but_the_proxy_keeps_serving(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    recorder.token = "cgs_someone_else"
    async with make_sidecar() as sidecar:
        await _get_many(proxy_url(sidecar), origin[1].url, 2)
        await _until(lambda: sidecar.shipper.stopped_reason is not None)
        await _get_many(proxy_url(sidecar), origin[1].url, 3)
        assert sidecar.shipper.state == "stopped:auth_rejected"
        assert sidecar.shipper.counters.dropped["auth_rejected"] == 5
        assert sidecar.config_source == "options"
    assert recorder.batches == []


async def test_429_retry_after_is_honoured_with_the_same_batch_id(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    recorder.fail_status, recorder.retry_after = 429, "1"
    async with make_sidecar() as sidecar:
        await _get_many(proxy_url(sidecar), origin[1].url, 1)
        await _until(lambda: len(recorder.batch_ids) == 1)
        started = asyncio.get_running_loop().time()
        recorder.fail_status = None
        await recorder.wait_events(1)
        waited = asyncio.get_running_loop().time() - started
    assert 0.8 < waited < 3.0
    assert recorder.batch_ids == [recorder.batch_ids[0]] * 2


async def test_heartbeat_carries_version_and_counters(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served], origin: tuple[Origin, Served]
) -> None:
    recorder, _ = ingest
    async with make_sidecar() as sidecar:
        await _get_many(proxy_url(sidecar), origin[1].url, 3)
        await _until(lambda: any(h["counters"]["sent"] == 3 for h in recorder.heartbeats))
    *running, last = recorder.heartbeats
    beat = running[-1]
    assert beat["project_id"] == PROJECT_ID
    assert beat["sidecar_version"]
    assert beat["counters"]["events_per_minute"] == 3
    assert beat["counters"]["queued"] == 0
    assert beat["counters"]["dropped_total"] == 0
    assert beat["state"] == "ok"
    # The last one, sent on shutdown, says so; every one names this process.
    assert last["state"] == "stopped" and last["counters"]["sent"] == 3
    assert len({h["instance_id"] for h in recorder.heartbeats}) == 1
    assert len(last["instance_id"]) == 32
    assert {b["instance_id"] for b in recorder.received} == {last["instance_id"]}


async def test_secrets_the_api_masked_are_counted_and_said_once(
    make_sidecar: SidecarFactory,
    ingest: tuple[Ingest, Served],
    origin: tuple[Origin, Served],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API newer than the sidecar scans what it sends and answers how many secrets
    it masked: the sidecar counts them in its heartbeat and warns, not once a batch."""
    recorder, _ = ingest
    recorder.redacted_per_event = 2
    with caplog.at_level(logging.WARNING, logger="cogumi.sidecar"):
        async with make_sidecar(batch_max_events=1) as sidecar:
            await _get_many(proxy_url(sidecar), origin[1].url, 3)
            await _until(lambda: sidecar.shipper.counters.sent == 3)
            await _until(lambda: any(h["counters"]["masked_by_api"] == 6
                                     for h in recorder.heartbeats))  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if "masked" in r.getMessage()]
    assert len(recorder.batches) == 3
    assert warnings == [
        f"the ingest API masked 2 secret(s) this sidecar (version {__version__}) sent in the "
        "clear (2 so far): its detector is behind the server's; upgrade the sidecar"
    ]


async def test_a_404_from_ingest_names_the_url_to_check_and_keeps_the_events(
    make_sidecar: SidecarFactory,
    ingest: tuple[Ingest, Served],
    origin: tuple[Origin, Served],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A base URL with a wrong path (or another service at that address) answers 404:
    the sidecar says which URL and which option, buffers, and delivers once fixed."""
    recorder, served = ingest
    recorder.fail_status = 404
    with caplog.at_level(logging.WARNING, logger="cogumi.sidecar"):
        async with make_sidecar(batch_max_events=2) as sidecar:
            await _get_many(proxy_url(sidecar), origin[1].url, 2)
            await _until(lambda: sidecar.shipper.counters.ingest_failures >= 1)
            assert sidecar.shipper.queued == 2
            recorder.fail_status = None
            events = await recorder.wait_events(2, within=15)
    assert len(events) == 2
    warnings = [r.getMessage() for r in caplog.records if "404" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{served.url}/api/ingest/events" in warnings[0]
    assert "check INGEST_URL" in warnings[0]


async def test_project_config_is_fetched_merged_and_refreshed(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    recorder.config = {"project_id": PROJECT_ID, "sink_domains": ["drop.example"],
                       "tool_domains": [], "internal_suffixes": [], "sensitive_paths": ["/admin"]}  # fmt: skip
    async with make_sidecar(config_refresh_sec=0.2, sink_domains=("flag-sink.example",)) as sc:
        assert sc.config_source == "api"
        async with httpx.AsyncClient(proxy=proxy_url(sc), trust_env=False) as client:
            for host in ("drop.example", "flag-sink.example"):
                response = await client.post(f"http://{host}/admin/x", content=b"data")
                assert response.json() == {}
            recorder.config = {**recorder.config, "sink_domains": ["later.example"]}
            await _until(lambda: sc.policy.is_sink("later.example"))
            assert (await client.get("http://later.example/")).json() == {}
        events = await recorder.wait_events(3)
    assert [e["destination"]["classification"] for e in events] == ["attacker_sink"] * 3
    assert events[0]["destination"]["sensitive_path"] == "/admin"
    assert recorder.config_fetches >= 2


async def test_config_failure_falls_back_to_the_options_lists(
    make_sidecar: SidecarFactory, ingest: tuple[Ingest, Served]
) -> None:
    recorder, _ = ingest
    recorder.config_status = 500
    async with make_sidecar(sink_domains=("flag-sink.example",)) as sidecar:
        assert sidecar.config_source == "options"
        async with httpx.AsyncClient(proxy=proxy_url(sidecar), trust_env=False) as client:
            assert (await client.get("http://flag-sink.example/")).json() == {}
        [event] = await recorder.wait_events(1)
    assert event["destination"]["classification"] == "attacker_sink"
