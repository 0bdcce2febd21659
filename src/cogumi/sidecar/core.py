"""Sans-IO core of the sidecar: exchange records in, event dicts out.

The proxy shell fills an :class:`Exchange` while bytes flow (capped previews
only, never whole bodies) and hands it to :func:`exchange_event`, a pure
function, so every rule about what gets recorded, redacted and hashed is tested
without sockets. Request-line and header helpers used by the shell live here
too for the same reason.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import msgspec

from cogumi.detect.destinations import DestinationClass, DestinationRules, classify
from cogumi.detect.redact import (
    is_sensitive_header,
    needing_scan,
    redact_headers,
    redact_text,
    scan_window,
)
from cogumi.detect.secrets import SecretMatch

SCHEMA_VERSION = 1
PREVIEW_LIMIT = 8192
PAYLOAD_LIMIT = 65536
PATH_LIMIT = 2048

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class BadProxyRequest(ValueError):
    """The client sent something a forward proxy cannot route (answered 400)."""


@dataclass(slots=True)
class Preview:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    limit: int = PREVIEW_LIMIT
    data: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.data)


@dataclass(slots=True)
class Exchange:
    """What the shell observed about one request/response or one tunnel.

    ``bytes_out``/``bytes_in`` count body bytes for HTTP (what an exfiltration
    carries) and raw tunnel bytes for CONNECT.
    """

    method: str
    host: str
    port: int
    path: str = ""
    request_headers: Headers = field(default_factory=list)
    status_code: int | None = None
    response_headers: Headers = field(default_factory=list)
    bytes_out: int = 0
    bytes_in: int = 0
    ts: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    duration_ms: float | None = None
    request_body: Preview = field(default_factory=Preview)
    response_body: Preview = field(default_factory=Preview)
    error: str | None = None
    error_detail: str | None = None
    intercepted: bool = False

    def finish(self) -> None:
        if self.duration_ms is None:
            self.duration_ms = round((time.perf_counter() - self.started) * 1000, 3)

    @property
    def is_tunnel(self) -> bool:
        return self.method == "CONNECT"


@dataclass(frozen=True, slots=True)
class Policy:
    """Project rules the core applies: destination classes and sensitive paths."""

    rules: DestinationRules
    sensitive_paths: tuple[str, ...] = ()

    def is_sink(self, host: str) -> bool:
        return _classify(host, self.rules) is DestinationClass.attacker_sink


@lru_cache(maxsize=4096)
def _classify(host: str, rules: DestinationRules) -> DestinationClass:
    """Asked on every request before any byte goes out, so cached per host."""
    return classify(host, rules)


# --- request line and headers -------------------------------------------------


def parse_absolute_uri(uri: str) -> tuple[str, int, str]:
    """Split an absolute-form ``http://host[:port]/path?q`` into host, port, path."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "http":
        raise BadProxyRequest("a forward proxy needs an absolute http:// URI")
    authority, slash, tail = rest.partition("/")
    authority, _, query = authority.partition("?")
    path = "/" + tail if slash else "/"
    if query and not slash:
        path = "/?" + query
    host, port = parse_authority(authority.rpartition("@")[2], default_port=80)
    return host, port, path


@lru_cache(maxsize=4096)
def parse_authority(authority: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) -> (host, port); bad input is a 400. Cached:
    a proxy sees the same few authorities over and over."""
    authority = authority.strip()
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if not port_text:
        if default_port is None:
            raise BadProxyRequest("CONNECT needs host:port")
        port_text = str(default_port)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadProxyRequest(f"bad host or port: {authority[:100]!r}")
    return host.lower(), int(port_text)


def end_to_end(headers: Iterable[tuple[str, str]]) -> Headers:
    """Drop hop-by-hop headers, including any the Connection header names."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | named
    return [(n, v) for n, v in pairs if n.lower() not in drop]


def header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    return next((v for n, v in headers if n.lower() == lowered), None)


def render_head(start_line: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start_line, *(f"{n}: {v}" for n, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace")


# --- events -------------------------------------------------------------------


_ISO_LIMIT: Final = 253_402_300_800  # 10000-01-01: past it (and before 1970) the slow way
_second: tuple[int, str] = (-1, "")  # the last whole second written, and its text


def iso_ts(epoch: float) -> str:
    """``epoch`` as RFC 3339 UTC with milliseconds (``2026-11-27T14:00:00.123Z``): the
    text of ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")``
    with ``Z``, whose microseconds are rounded half to even and then cut to
    milliseconds. The whole-second part is made once per second (events come many a
    second; the datetime route took ~4 µs an event)."""
    if not 0 <= epoch < _ISO_LIMIT:
        return _iso_ts_slow(epoch)
    frac, whole = math.modf(epoch)
    micros = round(frac * 1_000_000)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1
    second = int(whole)
    cached = _second
    if cached[0] != second:
        cached = _cached_second(second)
    return f"{cached[1]}.{micros // 1000:03d}Z"


def _cached_second(second: int) -> tuple[int, str]:
    global _second
    _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return _second


def _iso_ts_slow(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def integrity_hash(payload_redacted: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(
        payload_redacted, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_CANONICAL: Final = msgspec.json.Encoder(order="deterministic")


def _float_free_hash(payload_redacted: dict[str, Any]) -> str:
    """:func:`integrity_hash` of a payload that holds no float, written by msgspec
    (several times faster). For strings, integers, booleans, ``null``, lists and
    string-keyed objects its bytes are the stdlib's canonical JSON byte for byte (the
    server relies on the same; tests/events/test_fastparse.py holds both to it);
    floats are written differently, so only payloads built without any use this."""
    try:
        data = _CANONICAL.encode(payload_redacted)
    except (msgspec.EncodeError, UnicodeEncodeError, OverflowError, TypeError):
        return integrity_hash(payload_redacted)  # a lone surrogate, say: the stdlib's way
    return hashlib.sha256(data).hexdigest()


def _decode(preview: Preview) -> str:
    raw = bytes(preview.data)
    text = raw.decode("utf-8", errors="replace")
    if text.count("\ufffd") > max(4, len(text) // 20):
        return f"[binary body, {preview.total} bytes]"
    return text


def _body_limit(preview: Preview) -> int:
    return preview.limit + 1024


def _redacted_body(preview: Preview, text: str, clean: bool) -> tuple[str, list[SecretMatch]]:
    """The body preview (``text`` is :func:`_decode` of it) redacted and cut."""
    if preview.total == 0:
        return "", []
    text, matches = redact_text(text, limit=_body_limit(preview), clean=clean)
    if preview.truncated:
        text += f"\n[… truncated, {preview.total} bytes in total]"
    return text, matches


def _sensitive_match(path: str, patterns: Sequence[str]) -> str | None:
    """First pattern the path hits: globs via fnmatch, plain ones on segment bounds."""
    bare = path.split("?", 1)[0].lower()
    for pattern in patterns:
        p = pattern.strip().lower()
        if not p:
            continue
        if any(c in p for c in "*?["):
            if fnmatch.fnmatchcase(bare, p):
                return pattern
        elif bare == p or bare.startswith(p.rstrip("/") + "/") or f"{p.rstrip('/')}/" in bare + "/":
            return pattern
    return None


def _unique(matches: Iterable[SecretMatch]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for match in matches:
        seen.setdefault((match.kind, match.hash), match.to_dict())
    return list(seen.values())


def _summary(ex: Exchange, target: str) -> str:
    if ex.is_tunnel:
        head = f"CONNECT {target} tunnel"
        if ex.status_code != 200:
            return f"{head} refused ({ex.status_code}): {ex.error_detail or ex.error}"
        tail = f", error: {ex.error}" if ex.error else ""
        return f"{head}, {ex.bytes_out} B out, {ex.bytes_in} B in{tail}"
    head = f"{ex.method} {target}{ex.path[:200]}"
    if ex.intercepted:
        return f"{head} answered by the sidecar (sink domain, never left the network)"
    if ex.error:
        return f"{head} failed: {ex.error_detail or ex.error}"
    return f"{head} -> {ex.status_code}"


def exchange_event(ex: Exchange, policy: Policy) -> dict[str, Any]:
    """The one event an exchange produces, in the CONTRACTS.md shape."""
    ex.finish()
    # One scan of the path, the ordinary header values and the bodies joined says which
    # of them may hold something to mask (most exchanges: none); only those are scanned
    # again. Credential headers, masked whole but whose matches are evidence, are
    # scanned on their own.
    req_text = _decode(ex.request_body) if ex.request_body.total else ""
    resp_text = _decode(ex.response_body) if ex.response_body.total else ""
    req_plain = [v for n, v in ex.request_headers if not is_sensitive_header(n)]
    resp_plain = [v for n, v in ex.response_headers if not is_sensitive_header(n)]
    texts = [
        scan_window(ex.path, PATH_LIMIT),
        scan_window(req_text, _body_limit(ex.request_body)),
        scan_window(resp_text, _body_limit(ex.response_body)),
        *(scan_window(v) for v in req_plain),
        *(scan_window(v) for v in resp_plain),
    ]
    dirty = needing_scan(texts)
    headers_from = 3 + len(req_plain)
    req_clean = dirty.isdisjoint(range(3, headers_from))
    resp_clean = dirty.isdisjoint(range(headers_from, len(texts)))
    path, path_matches = redact_text(ex.path, limit=PATH_LIMIT, clean=0 not in dirty)
    req_headers, req_header_matches = redact_headers(ex.request_headers, clean=req_clean)
    resp_headers, resp_header_matches = redact_headers(ex.response_headers, clean=resp_clean)
    req_body, req_body_matches = _redacted_body(ex.request_body, req_text, 1 not in dirty)
    resp_body, resp_body_matches = _redacted_body(ex.response_body, resp_text, 2 not in dirty)
    classification = _classify(ex.host, policy.rules)
    target = f"{ex.host}:{ex.port}" if ex.is_tunnel or ex.port != 80 else ex.host
    payload: dict[str, Any] = {
        "summary": _summary(ex, target),
        "headers_redacted": {
            "request": [list(p) for p in req_headers],
            "response": [list(p) for p in resp_headers],
        },
        "body_redacted_preview": req_body,
        "response_body_redacted_preview": resp_body,
    }
    if ex.error:
        payload["error"] = ex.error
    if ex.intercepted:
        payload["intercepted"] = True
    blocked = ex.intercepted or (ex.is_tunnel and classification is DestinationClass.attacker_sink)
    return {
        "schema_version": SCHEMA_VERSION,
        "ts": iso_ts(ex.ts),
        "channel": "http",
        "type": "blocked" if blocked else "request",
        "actor": "target",
        "destination": {
            "host": ex.host,
            "path": path,
            "port": ex.port,
            "classification": classification.value,
            "sensitive_path": _sensitive_match(ex.path, policy.sensitive_paths),
        },
        "http": {
            "method": ex.method,
            "status_code": ex.status_code,
            "bytes_out": ex.bytes_out,
            "bytes_in": ex.bytes_in,
            "duration_ms": ex.duration_ms,
        },
        "payload_redacted": payload,
        "matches": _unique(
            [
                *path_matches,
                *req_header_matches,
                *req_body_matches,
                *resp_header_matches,
                *resp_body_matches,
            ]
        ),
        "error": ex.error,
        "integrity_hash": _float_free_hash(payload),  # strings, lists and booleans only
    }


def policy_event(reason: str, summary: str, **detail: Any) -> dict[str, Any]:
    """A ``policy.violation`` the sidecar itself raises (e.g. ingest throttling)."""
    payload: dict[str, Any] = {"summary": summary, "reason": reason, **detail}
    return {
        "schema_version": SCHEMA_VERSION,
        "ts": iso_ts(time.time()),
        "channel": "policy",
        "type": "policy.violation",
        "actor": "system",
        "destination": None,
        "http": None,
        "payload_redacted": payload,
        "matches": [],
        "error": None,
        "integrity_hash": integrity_hash(payload),
    }
