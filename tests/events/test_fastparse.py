"""The fast ingest decoder never decides differently from the pydantic schema.

``fastparse.decode`` either declines (``None``: pydantic validates as before) or
returns a batch pydantic would also accept, and then every stored value that
``prepare`` makes of it is the same as from pydantic's batch. Checked on
generated batches around every field's edges, on hand-picked cases where the
two libraries are known to differ, and on what the real sidecar sends (which
must take the fast path, or the speed-up is gone).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.sqlite import aiosqlite as aiosqlite_dialect

from cogumi.events import fastparse
from cogumi.events.ingest import _BATCH, SidecarRef, prepare
from cogumi.events.schemas import IngestBatchIn
from cogumi.sidecar.core import Exchange, Policy, exchange_event, iso_ts, policy_event
from tests.sidecar.test_core import POLICY, SECRET

PROJECT = uuid.UUID("0b8f4c1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b")
REF = SidecarRef(id=uuid.uuid4(), org_id=uuid.uuid4(), project_id=PROJECT)
RECEIVED = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
DIALECTS = [asyncpg_dialect.dialect(), aiosqlite_dialect.dialect()]


def _pydantic(body: bytes) -> IngestBatchIn | None:
    try:
        return _BATCH.validate_json(body)
    except ValidationError:
        return None


def _rows(batch: Any, dialect: Any) -> tuple[Any, ...]:
    try:
        prepared = prepare(batch, dialect=dialect, token=REF, received_at=RECEIVED)
    except Exception as exc:
        return ("refused", type(exc).__name__, str(exc))
    rows = [row[1:] for row in prepared.rows]  # the event id is random
    return (
        prepared.batch_id,
        prepared.instance,
        prepared.watermark,
        rows,
        prepared.sizes,
        prepared.types,
        prepared.timestamps,
        prepared.payloads,
    )


def assert_same_decision(body: bytes) -> bool:
    """The property; returns whether the fast path took the batch."""
    fast = fastparse.decode(body)
    if fast is None:
        return False
    slow = _pydantic(body)
    assert slow is not None, f"fast path accepted what pydantic refuses: {body[:300]!r}"
    for dialect in DIALECTS:
        assert _rows(fast, dialect) == _rows(slow, dialect), body[:300]
    assert fast.project_id == slow.project_id and fast.run_id == slow.run_id
    assert len(fast.events) == len(slow.events)
    return True


# --- what the sidecar sends ----------------------------------------------------------------


def sidecar_events() -> list[dict[str, Any]]:
    ex = Exchange(
        method="POST", host="api.openai.com", port=443, path="/v1/chat/completions?x=1",
        request_headers=[("Host", "api.openai.com"), ("Authorization", f"Bearer {SECRET}")],
        status_code=200, response_headers=[("Content-Type", "application/json")],
        ts=1_764_255_600.123, duration_ms=12.5,
    )  # fmt: skip
    ex.request_body.add(json.dumps({"messages": [{"content": f"key {SECRET} é ✓"}]}).encode())
    ex.response_body.add(b'{"ok": true, "note": "\\u2028 tab\\t"}')
    sink = Exchange(method="GET", host="attacker-sink.local", port=80, path="/c?d=1",
                    request_headers=[], status_code=200, response_headers=[],
                    ts=1_764_255_601.5, duration_ms=0.4, intercepted=True)  # fmt: skip
    tunnel = Exchange(method="CONNECT", host="tools.example.com", port=443, path="",
                      request_headers=[], status_code=200, response_headers=[],
                      ts=1_764_255_602.0, duration_ms=80.0)  # fmt: skip
    policy = Policy(rules=POLICY.rules, sensitive_paths=POLICY.sensitive_paths)
    return [
        exchange_event(ex, policy),
        exchange_event(sink, policy),
        exchange_event(tunnel, policy),
        policy_event("throttled", "300 events in this minute", window_sec=60, dropped=4),
    ]


def test_what_the_sidecar_sends_takes_the_fast_path() -> None:
    body = {
        "project_id": str(PROJECT),
        "run_id": None,
        "sidecar_version": "0.1.0",
        "batch_id": str(uuid.uuid4()),
        "events": sidecar_events(),
        "watermark": iso_ts(1_764_255_603.0),
    }
    encoded = json.dumps(body).encode()
    decoded = fastparse.decode(encoded)
    assert decoded is not None
    assert not fastparse.payload_floats(decoded)  # so msgspec writes the canonical JSON
    assert assert_same_decision(encoded)
    # Encoded compactly and with raw UTF-8, as httpx and other clients may send it.
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert assert_same_decision(compact)


# --- known differences go back to pydantic ---------------------------------------------------


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": "2026-11-27T14:00:00.123Z",
        "channel": "http",
        "type": "request",
        "destination": {"host": "tools.example.com", "path": "/v1/x", "port": 443,
                        "classification": "tool"},
        "http": {"method": "POST", "status_code": 201, "bytes_out": 10, "bytes_in": 4,
                 "duration_ms": 1.5},
        "payload_redacted": {"summary": "POST tools.example.com/v1/x -> 201"},
        "matches": [{"kind": "OPENAI_KEY", "hash": "a" * 64, "preview": "sk-…", "confidence": 1}],
    }  # fmt: skip
    base.update(overrides)
    return base


def body_of(*events: dict[str, Any], **fields: Any) -> bytes:
    batch = {"project_id": str(PROJECT), "batch_id": "b-1", "events": list(events)}
    batch.update(fields)
    return json.dumps(batch).encode()


@pytest.mark.parametrize(
    "body",
    [
        # pydantic strips strings (keys of the payload too); the fast path must not guess
        body_of(event(destination={"host": " tools.example.com "})),
        body_of(event(payload_redacted={" summary ": "x"})),
        body_of(event(), batch_id=" b-1"),
        body_of(event(matches=[{"kind": "K", "hash": "a" * 64 + "\n", "confidence": 0.5}])),
        body_of(event(http={"method": "GET\t"})),
        body_of(event(error=" upstream refused ")),
        # timestamps pydantic reads in its own way
        body_of(event(ts="2026-11-27T14:00:00.1234567Z")),
        body_of(event(ts="2026-11-27T14:00:00.9999999Z")),
        body_of(event(ts="2026-11-27 14:00:00Z")),
        body_of(event(ts="2026-11-27t14:00:00z")),
        body_of(event(ts="2026-11-27T14:00Z")),
        body_of(event(ts="2026-11-27")),
        body_of(event(ts=1_764_255_600)),
        body_of(event(ts="2026-11-27T14:00:00+00:60")),
        body_of(event(ts="2026-02-30T14:00:00Z")),
        body_of(event(), watermark="2026-11-27T14:00:00.1234567Z"),
        # lax numbers
        body_of(event(http={"status_code": "201"})),
        body_of(event(http={"status_code": 201.0})),
        body_of(event(destination={"port": "443"})),
        body_of(event(http={"duration_ms": "1.5"})),
        # NUL needs pydantic's field-naming 422
        body_of(event(error="a\u0000b")),
        body_of(event(payload_redacted={"k": "a\u0000b"})),
    ],
)
def test_where_the_libraries_differ_the_fast_path_declines(body: bytes) -> None:
    assert fastparse.decode(body) is None


STRING_FIELDS = [
    ("batch_id",), ("sidecar_version",), ("instance_id",), ("events", "destination", "host"),
    ("events", "destination", "path"), ("events", "destination", "sensitive_path"),
    ("events", "http", "method"), ("events", "matches", "kind"), ("events", "matches", "hash"),
    ("events", "matches", "preview"), ("events", "error"), ("events", "integrity_hash"),
]  # fmt: skip


@pytest.mark.parametrize("path", STRING_FIELDS, ids="/".join)
@pytest.mark.parametrize("pad", [" ", "\t", "\n", "\u00a0", "\u2003"])
def test_every_string_pydantic_strips_sends_the_batch_back(path: tuple[str, ...], pad: str) -> None:
    batch: dict[str, Any] = json.loads(
        body_of(event(error="e", integrity_hash="h"), sidecar_version="0.1.0",
                instance_id="replica-1")
    )  # fmt: skip
    batch["events"][0]["destination"]["sensitive_path"] = "/admin"
    holder: Any = batch
    for name in path[:-1]:
        holder = holder[name]
        holder = holder[0] if isinstance(holder, list) else holder
    plain = json.dumps(batch).encode()
    assert assert_same_decision(plain)
    holder[path[-1]] = holder[path[-1]] + pad
    assert fastparse.decode(json.dumps(batch).encode()) is None
    holder[path[-1]] = pad + holder[path[-1]].rstrip()
    assert fastparse.decode(json.dumps(batch).encode()) is None


@pytest.mark.parametrize(
    "body",
    [
        body_of(event()),
        body_of(event(ts="2026-11-27T14:00:00+05:30"), watermark="2026-11-27T14:00:01-00:00"),
        body_of(event(ts="2026-11-27T14:00:00")),  # naive: read as UTC by prepare
        body_of(
            event(
                payload_redacted={
                    "n": 123456789012345678901234567890,
                    "f": -0.0,
                    "e": 1e-7,
                    "u": "\u2028é✓",
                    "nested": {" k ": [1]},
                }
            )
        ),
        body_of(event(payload_redacted={"a": 1, "a ": 2})),
        body_of(event(http={"duration_ms": 3}, matches=[])),
        body_of(event(destination=None, http=None, type="policy.violation", channel="policy")),
        body_of(*(event() for _ in range(3)), run_id=str(uuid.uuid4())),
    ],
)
def test_ordinary_and_edge_batches_store_the_same_rows(body: bytes) -> None:
    assert_same_decision(body)


# --- generated batches -----------------------------------------------------------------------

TEXT = st.one_of(
    st.sampled_from(["", "x", " x", "x ", "\tx", "x\n", "é", "\u2028", "a\u0000b", "sk-…d9"]),
    st.text(max_size=20),
    st.text(min_size=250, max_size=260),
)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1, 65535, 65536, 999, 1000, 0.5, 1.0, 1.5, "5", "1.5", True, None]),
)
INSTANCES = ["a", "Replica_1-b", "a\n", "\na", " a ", "a.b", "x" * 64, "x" * 65, "ä"]
STAMP = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-11-27T14:00:00Z",
            "2026-11-27T14:00:00.5Z",
            "2026-11-27T14:00:00.123456Z",
            "2026-11-27T14:00:00.1234567Z",
            "2026-11-27T23:59:60Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T14:00:00+23:59",
            "2026-11-27T14:00:00-24:00",
            "2026-11-27T14:00:00+0100",
            "2026-11-27T14:00",
            "20261127T140000Z",
            "2026-11-27T14:00:00.Z",
            "",
        ]
    ),
    NUMBER,
)
VALUE = st.one_of(TEXT, NUMBER, STAMP)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBER, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
FIELDS = {
    "ts": STAMP,
    "channel": st.sampled_from(["http", "system", "policy", "HTTP", " http", "other"]),
    "type": st.sampled_from(["request", "policy.violation", "agent.message", "nope"]),
    "actor": st.sampled_from(["target", "adversary", "system", "x"]),
    "destination": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "host": TEXT,
                "path": TEXT,
                "port": NUMBER,
                "sensitive_path": TEXT,
                "classification": st.sampled_from(["tool", "unknown", "attacker_sink", "x"]),
                "extra": VALUE,
            },
        ),
    ),
    "http": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "method": TEXT,
                "status_code": NUMBER,
                "bytes_out": NUMBER,
                "bytes_in": NUMBER,
                "duration_ms": NUMBER,
            },
        ),
    ),
    "payload_redacted": st.one_of(st.dictionaries(TEXT, JSONISH, max_size=4), JSONISH),
    "matches": st.lists(
        st.fixed_dictionaries(
            {
                "kind": TEXT,
                "hash": st.sampled_from(["a" * 64, "A" * 64, "a" * 63, "a" * 64 + "\n"]),
                "confidence": NUMBER,
            },
            optional={"preview": TEXT},
        ),
        max_size=2,
    ),
    "error": st.one_of(st.none(), TEXT),
    "integrity_hash": st.one_of(st.none(), TEXT),
    "schema_version": NUMBER,
    "surprise": VALUE,
}


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    events = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        one = event()
        for name in draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=3)):
            one[name] = draw(FIELDS[name])
        for name in draw(st.sets(st.sampled_from(["ts", "channel", "type", "actor"]), max_size=1)):
            one.pop(name, None)
        events.append(one)
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["watermark"] = draw(STAMP)
    if draw(st.booleans()):
        fields["batch_id"] = draw(TEXT)
    if draw(st.booleans()):
        fields["sidecar_version"] = draw(TEXT)
    if draw(st.booleans()):
        fields["instance_id"] = draw(st.one_of(TEXT, st.sampled_from(INSTANCES)))
    if draw(st.booleans()):
        fields["run_id"] = draw(st.one_of(st.uuids().map(str), st.sampled_from(["", "x", None])))
    body = json.dumps({"project_id": str(PROJECT), "batch_id": "b", "events": events, **fields},
                      ensure_ascii=draw(st.booleans()))  # fmt: skip
    return body.encode("utf-8", "surrogatepass")


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_generated_batches_never_decide_differently(body: bytes) -> None:
    assert_same_decision(body)


# --- canonical JSON of payloads ----------------------------------------------------------------

CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
FLOATLESS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
              ANY_TEXT, st.sampled_from(["\u2028", "\x7f", "\x1f\b\f\n\r\t\"\\/", "\U0001f600"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(ANY_TEXT, FLOATLESS, max_size=6))
def test_msgspec_writes_a_floatless_payload_byte_for_byte_as_the_stdlib(payload: dict[str, Any]) -> None:  # fmt: skip
    assert fastparse.canonical_payload(payload) == CANONICAL.encode(payload).encode()


def test_deep_and_wide_payloads_encode_alike() -> None:
    deep: Any = "x"
    for depth in range(200):
        deep = {f"k{depth % 7}": [deep, depth]}
    wide = {chr(code): code for code in range(1, 0x3000, 7)} | {"\U00010000": 1, "\uffff": 2}
    for payload in ({"deep": deep}, wide):
        assert fastparse.canonical_payload(payload) == CANONICAL.encode(payload).encode()


@pytest.mark.parametrize(
    ("payload", "floats"),
    [('{"a": 1, "b": ["x", true, null]}', False), ('{"a": 1.0}', True), ('{"a": [{"b": 2e3}]}', True),
     ('{"a": -0.0}', True), ('{"a": "1.5"}', False)],
)  # fmt: skip
def test_a_payload_float_anywhere_is_noted(payload: str, floats: bool) -> None:
    body = body_of(event(payload_redacted=json.loads(payload)), batch_id="f")
    batch = fastparse.decode(body)
    assert batch is not None and fastparse.payload_floats(batch) is floats
    # Typed floats outside payloads (confidence, duration) do not count.
    typed = body_of(event(http={"method": "GET", "duration_ms": 1.5}), batch_id="g")
    assert (batch := fastparse.decode(typed)) is not None and not fastparse.payload_floats(batch)


def test_a_float_out_of_range_still_goes_back_to_pydantic() -> None:
    body = body_of(event(), batch_id="h").replace(b'"payload_redacted": {', b'"payload_redacted": {"big": 1e999, ', 1)  # fmt: skip
    assert b"1e999" in body
    assert fastparse.decode(body) is None
    assert_same_decision(body)


def test_floats_noted_in_one_batch_do_not_leak_into_the_next() -> None:
    with_float = fastparse.decode(body_of(event(payload_redacted={"a": 0.5}), batch_id="i"))
    without = fastparse.decode(body_of(event(payload_redacted={"a": 1}), batch_id="j"))
    assert with_float is not None and fastparse.payload_floats(with_float)
    assert without is not None and not fastparse.payload_floats(without)


def test_the_padding_check_agrees_with_str_strip_on_every_code_point() -> None:
    for code in range(0x110000):
        char = chr(code)
        for text in (char, f"x{char}", f"{char}x", f"x{char}x"):
            assert fastparse._padded(text) is (len(text.strip()) != len(text)), hex(code)
    assert not fastparse._padded("") and not fastparse._padded(None)
