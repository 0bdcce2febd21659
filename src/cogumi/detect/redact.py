"""Redaction: what leaves the customer's network has every detected secret masked.

Redaction happens before truncation, so a secret cut in half by the 64 KB limit
is still masked. The scan covers the first ``limit`` bytes plus a margin, which
bounds the work per event however large the body is.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from cogumi.detect.match import SecretMatch
from cogumi.detect.secrets import priority, scan_all, select

DEFAULT_LIMIT = 65536
SCAN_MARGIN = 4096
"""Characters scanned past the limit so a secret straddling it is still recognised."""

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
_SENSITIVE_WORDS = ("token", "secret", "key", "password", "passwd", "session", "credential", "auth")
_AUTH_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9_-]*)\s+(?P<rest>\S.*)$", re.DOTALL)
_COOKIE_PAIR = re.compile(r"(?P<name>[^=;,\s]+)=(?P<value>[^;]*)")


def label(match: SecretMatch) -> str:
    """The text that stands in for a secret."""
    return f"[REDACTED:{match.kind}:{match.preview}]"


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TOKEN_REST = re.compile(r"[A-Za-z0-9_+/=-]*")


def _masked_end(text: str, end: int) -> int:
    """Where the mask of a match ending at ``end`` ends: a match that stops inside a
    token (a rule with a length cap, say, on a longer value) masks the token's rest
    too, so no tail of a secret is left in the clear."""
    if end < len(text) and text[end] in _WORD_CHARS:
        rest = _TOKEN_REST.match(text, end)
        return rest.end() if rest is not None else end
    return end


def _merge(text: str, matches: list[SecretMatch]) -> list[tuple[int, int, SecretMatch]]:
    """Union of all masked spans; each merged span is labelled by the best match inside it."""
    spans: list[tuple[int, int, SecretMatch]] = []
    for m in sorted(matches, key=lambda m: (m.start, -m.end)):
        end = _masked_end(text, m.end)
        if spans and m.start < spans[-1][1]:
            start, last, top = spans[-1]
            spans[-1] = (start, max(last, end), min(top, m, key=priority))
        else:
            spans.append((m.start, end, m))
    return spans


def mask(text: str, matches: list[SecretMatch]) -> str:
    """Replace every matched stretch (overlaps merged) with its label."""
    out: list[str] = []
    pos = 0
    for start, end, top in _merge(text, matches):
        out.append(text[pos:start])
        out.append(label(top))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_text(
    text: str, *, canaries: Collection[str] = (), limit: int = DEFAULT_LIMIT
) -> tuple[str, list[SecretMatch]]:
    """Mask every secret, then cut to ``limit`` UTF-8 bytes; returns the matches found."""
    window = text[: limit + SCAN_MARGIN]
    everything = scan_all(window, canaries=canaries)
    return truncate_utf8(mask(window, everything), limit), select(everything)


def is_sensitive_header(name: str) -> bool:
    """Headers whose value is a credential by definition, whatever it looks like."""
    low = name.strip().lower()
    return low in SENSITIVE_HEADERS or any(word in low for word in _SENSITIVE_WORDS)


def _opaque(value: str, found: list[SecretMatch], offset: int = 0) -> str:
    """Mask a whole credential value; a detected secret covering it lends its kind and preview."""
    best = select(found)
    if len(best) == 1 and best[0].start <= offset and best[0].end >= len(value):
        return label(best[0])
    return "[REDACTED:HEADER]"


def _redact_sensitive(
    name: str, value: str, canaries: Collection[str]
) -> tuple[str, list[SecretMatch]]:
    """Authorization keeps its scheme (``Bearer [REDACTED:JWT:eyJ…x1]``), cookies their names.
    Returns the masked value and every hit in it."""
    value = value.strip()
    low = name.strip().lower()
    found = scan_all(value, canaries=canaries)
    if low in {"authorization", "proxy-authorization"}:
        parts = _AUTH_SCHEME.match(value)
        if parts is not None:
            return f"{parts.group('scheme')} {_opaque(value, found, parts.start('rest'))}", found
    if low in {"cookie", "set-cookie"}:
        masked = _COOKIE_PAIR.sub(lambda m: f"{m.group('name')}=[REDACTED:HEADER]", value)
        return masked, found
    return _opaque(value, found), found


def redact_headers(
    headers: Iterable[tuple[str, str]], *, canaries: Collection[str] = ()
) -> tuple[list[tuple[str, str]], list[SecretMatch]]:
    """Mask credential headers whole and secrets inside all other header values.

    Header names stay as they are (they are evidence: *which* credential was
    sent); cookie names stay too, their values go.
    """
    out: list[tuple[str, str]] = []
    matches: list[SecretMatch] = []
    for name, value in headers:
        if is_sensitive_header(name):
            masked, everything = _redact_sensitive(name, value, canaries)
            found = select(everything)  # find_secrets of the same text, without a second scan
        else:
            masked, found = redact_text(value, canaries=canaries)
        out.append((name, masked))
        matches.extend(found)
    return out, matches
