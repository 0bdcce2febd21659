"""The sans-IO core: exchange records in, events out, no sockets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cogumi.detect.destinations import DestinationRules
from cogumi.sidecar import core
from cogumi.sidecar.core import (
    BadProxyRequest,
    Exchange,
    Policy,
    Preview,
    end_to_end,
    exchange_event,
    integrity_hash,
    parse_absolute_uri,
    parse_authority,
    policy_event,
)
from tests.datasets import dataset
from tests.detect.test_redact import NOSEY_PARKER

SECRET = "sk-proj-Q7rT2vX9kL4mN8pB3cF6hJ1wZ5yA0dE2gH4jK6mP8sU0wY"
POLICY = Policy(
    rules=DestinationRules.from_lists(
        sink_domains=["attacker-sink.local"], tool_domains=["tools.example.com"],
        internal_suffixes=["corp.internal"],
    ),
    sensitive_paths=("/admin", "/v1/*/delete"),
)  # fmt: skip


def exchange(**overrides: object) -> Exchange:
    """A factory for exchange records, like a test flow."""
    values: dict[str, object] = {
        "method": "POST", "host": "api.openai.com", "port": 80, "path": "/v1/chat/completions",
        "request_headers": [("Host", "api.openai.com"), ("Authorization", f"Bearer {SECRET}")],
        "status_code": 200, "response_headers": [("Content-Type", "application/json")],
        "ts": 1_700_000_000.25, "duration_ms": 12.5,
    }  # fmt: skip
    values.update(overrides)
    ex = Exchange(**values)  # type: ignore[arg-type]
    return ex


def test_event_shape_and_integrity_hash() -> None:
    ex = exchange()
    ex.request_body.add(json.dumps({"messages": [{"content": f"my key is {SECRET}"}]}).encode())
    ex.bytes_out = ex.request_body.total
    ex.response_body.add(b'{"ok": true}')
    ex.bytes_in = 12
    event = exchange_event(ex, POLICY)
    assert set(event) >= {"ts", "channel", "type", "actor", "destination", "http",
                          "payload_redacted", "matches", "integrity_hash"}  # fmt: skip
    assert event["ts"] == "2023-11-14T22:13:20.250Z"
    assert event["destination"]["classification"] == "llm_provider"
    assert event["http"] == {"method": "POST", "status_code": 200, "bytes_out": ex.bytes_out,
                             "bytes_in": 12, "duration_ms": 12.5}  # fmt: skip
    canonical = json.dumps(event["payload_redacted"], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)  # fmt: skip
    assert event["integrity_hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert SECRET not in json.dumps(event)
    assert hashlib.sha256(SECRET.encode()).hexdigest() in {m["hash"] for m in event["matches"]}
    assert len(event["matches"]) == len({(m["kind"], m["hash"]) for m in event["matches"]})


@pytest.mark.parametrize(
    ("host", "expected"),
    [("attacker-sink.local", "attacker_sink"), ("x.attacker-sink.local", "attacker_sink"),
     ("10.1.2.3", "internal_api"), ("db.corp.internal", "internal_api"),
     ("tools.example.com", "tool"), ("api.anthropic.com", "llm_provider"),
     ("example.org", "public_internet")],
)  # fmt: skip
def test_destination_classes(host: str, expected: str) -> None:
    assert exchange_event(exchange(host=host), POLICY)["destination"]["classification"] == expected


def test_sink_exchange_is_blocked_and_tunnels_to_sinks_too() -> None:
    http = exchange_event(exchange(host="attacker-sink.local", intercepted=True), POLICY)
    assert (http["type"], http["payload_redacted"]["intercepted"]) == ("blocked", True)
    tunnel = exchange(method="CONNECT", host="attacker-sink.local", port=443, path="",
                      status_code=403, error="sink_domain")  # fmt: skip
    assert exchange_event(tunnel, POLICY)["type"] == "blocked"
    assert exchange_event(exchange(), POLICY)["type"] == "request"


def test_tunnel_summary_and_error_summary() -> None:
    tunnel = exchange(method="CONNECT", port=443, path="", bytes_out=10, bytes_in=20,
                      request_headers=[])  # fmt: skip
    summary = exchange_event(tunnel, POLICY)["payload_redacted"]["summary"]
    assert summary == "CONNECT api.openai.com:443 tunnel, 10 B out, 20 B in"
    failed = exchange(status_code=502, error="upstream_refused", error_detail="connection refused")
    event = exchange_event(failed, POLICY)
    assert event["error"] == event["payload_redacted"]["error"] == "upstream_refused"
    assert event["payload_redacted"]["summary"].endswith("failed: connection refused")


def test_sensitive_paths_and_secrets_in_the_query() -> None:
    event = exchange_event(exchange(path=f"/admin/users?key={SECRET}"), POLICY)
    assert event["destination"]["sensitive_path"] == "/admin"
    assert SECRET not in event["destination"]["path"]
    assert (
        exchange_event(exchange(path="/v1/42/delete"), POLICY)["destination"]["sensitive_path"]
        == "/v1/*/delete"
    )
    assert (
        exchange_event(exchange(path="/administer"), POLICY)["destination"]["sensitive_path"]
        is None
    )


def test_preview_keeps_a_capped_prefix_and_counts_everything() -> None:
    preview = Preview(limit=10)
    for _ in range(5):
        preview.add(b"abcdef")
    assert (bytes(preview.data), preview.total, preview.truncated) == (b"abcdefabcd", 30, True)
    ex = exchange(request_body=preview)
    body = exchange_event(ex, POLICY)["payload_redacted"]["body_redacted_preview"]
    assert body == "abcdefabcd\n[… truncated, 30 bytes in total]"


def test_binary_bodies_are_described_not_dumped() -> None:
    ex = exchange()
    ex.response_body.add(bytes(range(256)) * 8)
    event = exchange_event(ex, POLICY)
    assert (
        event["payload_redacted"]["response_body_redacted_preview"] == "[binary body, 2048 bytes]"
    )


def test_uri_and_authority_parsing() -> None:
    assert parse_absolute_uri("http://Example.com:8080/a/b?c=1") == (
        "example.com",
        8080,
        "/a/b?c=1",
    )
    assert parse_absolute_uri("http://example.com") == ("example.com", 80, "/")
    assert parse_absolute_uri("http://example.com?x=1") == ("example.com", 80, "/?x=1")
    assert parse_absolute_uri("http://user:pw@example.com/") == ("example.com", 80, "/")
    assert parse_authority("[::1]:8443") == ("::1", 8443)
    for bad in ("https://example.com/", "/relative", "http://:80/", "http://host:99999/"):
        with pytest.raises(BadProxyRequest):
            parse_absolute_uri(bad)
    with pytest.raises(BadProxyRequest):
        parse_authority("example.com")


def test_hop_by_hop_headers_are_dropped() -> None:
    headers = [("Connection", "keep-alive, X-Private"), ("X-Private", "1"), ("Keep-Alive", "5"),
               ("Proxy-Authorization", "Basic abc"), ("Transfer-Encoding", "chunked"),
               ("Proxy-Connection", "keep-alive"), ("Accept", "*/*")]  # fmt: skip
    assert end_to_end(headers) == [("Accept", "*/*")]


def test_policy_violation_event() -> None:
    event = policy_event("ingest_throttled", "too many", limit=300)
    assert (event["channel"], event["type"], event["actor"]) == (
        "policy",
        "policy.violation",
        "system",
    )
    assert event["payload_redacted"]["reason"] == "ingest_throttled"
    assert event["integrity_hash"] == integrity_hash(event["payload_redacted"])


# What a payload can hold: everything exchange_event puts in one (strings of any
# Unicode, lone surrogates included, lists, booleans, integers, null), never a float.
_FLOAT_FREE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), _FLOAT_FREE, max_size=6))
def test_the_sidecars_hash_of_a_float_free_payload_is_the_canonical_one(
    payload: dict[str, object],
) -> None:
    assert core._float_free_hash(payload) == integrity_hash(payload)


def test_events_carry_the_canonical_hash_of_their_payload() -> None:
    ex = Exchange(
        method="POST", host="api.example.com", port=8443, path="/v1/x?key=AKIA4QWERT7YUI2OPLKJ",
        request_headers=[("Authorization", "Bearer abc"), ("X-Note", "é ✓ \u2028")],
        status_code=502, error="upstream_reset", intercepted=True,
    )  # fmt: skip
    ex.request_body.add("ünïcode body \x00 with a NUL and \ud800".encode("utf-8", "surrogatepass"))
    event = exchange_event(ex, POLICY)
    assert event["integrity_hash"] == integrity_hash(event["payload_redacted"])


def test_the_one_scan_shortcut_changes_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exchange whose texts hold nothing to mask skips their scans
    (:func:`cogumi.detect.redact.needing_scan`). Every Nosey Parker example, put
    in turn in the path, a header, a credential header and each body, gives the
    same event as with every text scanned on its own."""
    lines = (dataset(NOSEY_PARKER) / "secret_examples.jsonl").read_text("utf-8").splitlines()
    examples = [json.loads(line)["text"] for line in lines]
    placements: list[Callable[[str, str], Exchange]] = [
        lambda text, _: exchange(path="/v1/items?q=" + text.replace("\n", " ")),
        lambda text, _: exchange(request_headers=[("Host", "a.example"), ("X-Note", text)]),
        lambda text, _: exchange(response_headers=[("Set-Cookie", f"s={text}"), ("Via", "x")]),
        lambda text, _: exchange(request_body=preview_of(text)),
        lambda text, _: exchange(response_body=preview_of(text), request_headers=[]),
        # two examples in two places: one may need its own scan, the other not
        lambda text, other: exchange(
            request_headers=[("Host", "a.example"), ("X-Note", other.replace("\n", " "))],
            response_body=preview_of(text),
        ),
        lambda text, other: exchange(
            path="/q?" + other.replace("\n", " "), request_body=preview_of(text),
            response_headers=[("Content-Type", "text/plain"), ("X-Trace", text[:200])],
        ),
    ]  # fmt: skip
    events = []
    for index, text in enumerate(examples):
        other = examples[(index * 7 + 3) % len(examples)]
        ex = placements[index % len(placements)](text, other)
        events.append((ex, exchange_event(ex, POLICY)))
    shortcut_taken = sum(not event["matches"] for _, event in events)
    monkeypatch.setattr(core, "needing_scan", lambda texts: set(range(len(texts))))
    for ex, event in events:
        assert exchange_event(ex, POLICY) == event
    assert shortcut_taken > 50  # both ways were taken


def preview_of(text: str) -> Preview:
    preview = Preview()
    preview.add(text.encode("utf-8"))
    return preview


def _iso_by_datetime(epoch: float) -> str:
    from datetime import UTC, datetime

    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


_SECOND = 1_764_255_603


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=4e9),
        st.integers(0, 999).map(lambda ms: _SECOND + ms / 1000),
        st.tuples(st.integers(0, 999), st.sampled_from([5e-7, -5e-7, 4.99e-7, 9.999995e-4])).map(
            lambda t: _SECOND + t[0] / 1000 + t[1]
        ),
    )
)
def test_event_times_are_written_as_datetime_writes_them(epoch: float) -> None:
    """The fast iso_ts (whole seconds cached) gives datetime's text to the character,
    rounding to microseconds half to even and carrying into the next second."""
    assert core.iso_ts(epoch) == _iso_by_datetime(epoch)


@pytest.mark.parametrize(
    "epoch", [_SECOND + 0.9999995, _SECOND + 0.99999949, 0.0, 2.0000005, 253_402_300_799.999]
)
def test_event_times_at_the_edges(epoch: float) -> None:
    assert core.iso_ts(epoch) == _iso_by_datetime(epoch)
