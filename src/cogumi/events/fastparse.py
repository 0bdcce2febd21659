"""A faster decoder for ingest batches, exact with the pydantic schema or silent.

pydantic's ``validate_json`` of a 200-event batch is about a third of the API's
CPU per event (~18 µs of ~50). msgspec decodes and checks the same batch into
typed objects in ~4 µs per event. The pydantic models in
:mod:`cogumi.events.schemas` stay the one definition of the shape: they document
the API, name the field in every 422, and decide every case this decoder does
not take on. :func:`decode` returns a batch only when it is sure pydantic would
accept the body with the very same values; anything else (an error, or one of
the few inputs where the two libraries differ) returns ``None`` and the caller
validates with pydantic as before. So this module can make ingest faster and
can never make it accept, refuse or store anything differently; a differential
test (``tests/events/test_fastparse.py``) holds it to that.

Where the two differ, and how each case goes back to pydantic:

- pydantic strips the whitespace around every string (``str_strip_whitespace``),
  top-level ``payload_redacted`` keys included: a string with whitespace at
  either end sends the batch back;
- pydantic's lax mode takes more (numbers as strings, timestamps as numbers,
  ``5.0`` for an int): msgspec is strict and refuses those, so they go back;
- timestamps: pydantic takes many forms (and truncates fractions past six
  digits, where msgspec rounds); this decoder takes only the RFC 3339 form a
  sidecar sends (``2026-11-27T14:00:00.123Z``, an offset, or none), which both
  read the same, and :func:`timestamp` turns it into a ``datetime``;
- a NUL (``\\u0000``) needs pydantic's field-naming 422: such a body goes back.

The decoder also notes whether any untyped value (inside a payload) was a
float: a batch without one can have its payloads' canonical JSON written by
msgspec, which writes strings, integers and key order exactly as the stdlib
encoder does but floats in another form (``1e17`` for ``1e+17``); see
:func:`canonical_payload`.
"""

from __future__ import annotations

import math
import threading
import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct, field

from cogumi.events.schemas import MAX_EVENTS_PER_BATCH

Short = Annotated[str, Meta(max_length=255)]
Long = Annotated[str, Meta(max_length=2048)]
Channel = Literal["http", "system", "policy"]
EventType = Literal[
    "request",
    "response",
    "blocked",
    "marker",
    "secret.detected",
    "policy.violation",
    "agent.message",
]
Actor = Literal["target", "adversary", "system"]
Stamp = Annotated[
    str,
    Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?\Z"),
]
"""An RFC 3339 time with at most microseconds, in the one form :func:`timestamp` and
pydantic read alike."""
Classification = Literal[
    "attacker_sink", "internal_api", "tool", "llm_provider", "public_internet", "unknown"
]


class FastDestination(Struct, forbid_unknown_fields=True, kw_only=True):
    host: Short = ""
    path: Long = ""
    port: Annotated[int, Meta(ge=0, le=65535)] | None = None
    classification: Classification = "unknown"
    sensitive_path: Short | None = None


class FastHttp(Struct, forbid_unknown_fields=True, kw_only=True):
    method: Annotated[str, Meta(max_length=16)] | None = None
    status_code: Annotated[int, Meta(ge=0, le=999)] | None = None
    bytes_out: Annotated[int, Meta(ge=0)] | None = None
    bytes_in: Annotated[int, Meta(ge=0)] | None = None
    duration_ms: Annotated[float, Meta(ge=0)] | None = None


class FastMatch(Struct, forbid_unknown_fields=True, kw_only=True):
    # The order of pydantic's MatchIn: the stored JSON of matches is encoded from it.
    kind: Annotated[str, Meta(min_length=1, max_length=64)]
    hash: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    preview: Annotated[str, Meta(max_length=64)] = ""
    confidence: Annotated[float, Meta(ge=0, le=1)]


class FastEvent(Struct, forbid_unknown_fields=True, kw_only=True):
    ts: Stamp
    channel: Channel
    type: EventType
    actor: Actor = "target"
    destination: FastDestination | None = None
    http: FastHttp | None = None
    payload_redacted: dict[str, Any] = field(default_factory=dict)
    matches: Annotated[list[FastMatch], Meta(max_length=100)] = field(default_factory=list)
    error: Long | None = None
    integrity_hash: Annotated[str, Meta(max_length=64)] | None = None
    schema_version: Annotated[int, Meta(ge=1, le=1)] = 1


class FastBatch(Struct, forbid_unknown_fields=True, kw_only=True, dict=True):
    """The batch as sent; :func:`decode` also notes whether a payload holds a float
    (:func:`payload_floats`), which the body cannot set."""

    project_id: uuid.UUID
    run_id: uuid.UUID | None = None
    sidecar_version: Annotated[str, Meta(max_length=64)] = ""
    # schemas.INSTANCE_PATTERN, ending with \Z: Python's ``$`` also matches before a final newline.
    instance_id: Annotated[str, Meta(max_length=64, pattern=r"^[A-Za-z0-9_-]*\Z")] = ""
    batch_id: Annotated[str, Meta(min_length=1, max_length=64)]
    events: Annotated[list[FastEvent], Meta(max_length=MAX_EVENTS_PER_BATCH)]
    watermark: Stamp | None = None


class _FloatsSeen(threading.local):
    count = 0
    out_of_range = False


_floats = _FloatsSeen()


def _float_hook(text: str) -> float:
    """Every float of an untyped value (payloads) passes here: counted, and one out of
    float range flagged (msgspec alone refuses it, so the batch goes back as before)."""
    value = float(text)
    _floats.count += 1
    if not math.isfinite(value):
        _floats.out_of_range = True
    return value


_DECODER: Final = msgspec.json.Decoder(FastBatch, float_hook=_float_hook)
_MATCHES: Final = msgspec.json.Encoder()
_CANONICAL: Final = msgspec.json.Encoder(order="deterministic")


def decode(body: bytes) -> FastBatch | None:
    """The batch, when pydantic would accept ``body`` with the same values; else None."""
    if b"\\u0000" in body:
        return None
    _floats.count, _floats.out_of_range = 0, False
    try:
        batch = _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if _floats.out_of_range:
        return None
    batch.__dict__["payload_floats"] = _floats.count > 0
    if _padded(batch.batch_id) or _padded(batch.sidecar_version):
        return None
    try:
        if batch.watermark is not None:
            timestamp(batch.watermark)
        for event in batch.events:
            timestamp(event.ts)
    except ValueError:  # a date that does not exist (February 30, 24:00, ...)
        return None
    for event in batch.events:
        if not _clean(event):
            return None
    return batch


def payload_floats(batch: FastBatch) -> bool:
    """Whether any payload of ``batch`` holds a float (true when unknown)."""
    return bool(batch.__dict__.get("payload_floats", True))


def canonical_payload(payload: dict[str, Any]) -> bytes:
    """The canonical JSON (sorted keys, no spaces, UTF-8) of a payload without floats,
    byte for byte what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` writes, at a fraction of the cost. Only for payloads of a
    batch without :func:`payload_floats`."""
    return _CANONICAL.encode(payload)


def timestamp(stamp: str) -> datetime:
    """A :data:`Stamp` as the ``datetime`` pydantic would make of it."""
    return datetime.fromisoformat(stamp)


def matches_json(matches: list[FastMatch]) -> str:
    """The stored JSON of an event's matches, as pydantic's ``dump_json`` writes it."""
    return _MATCHES.encode(matches).decode()


def _padded(text: str | None) -> bool:
    """Would ``str.strip()`` change it? (Its first or last character is whitespace;
    checked without building the stripped copy.)"""
    return text is not None and (text[:1].isspace() or text[-1:].isspace())


def _clean(event: FastEvent) -> bool:
    """No string pydantic would strip (so the values are the same)."""
    if _padded(event.error) or _padded(event.integrity_hash):
        return False
    dest, http = event.destination, event.http
    if dest is not None and (
        _padded(dest.host) or _padded(dest.path) or _padded(dest.sensitive_path)
    ):
        return False
    if http is not None and _padded(http.method):
        return False
    for match in event.matches:
        if _padded(match.kind) or _padded(match.hash) or _padded(match.preview):
            return False
    return not any(_padded(key) for key in event.payload_redacted)
