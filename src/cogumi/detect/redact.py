"""Redaction: what leaves the customer's network has every detected secret masked.

Redaction happens before truncation, so a secret cut in half by the 64 KB limit
is still masked. The scan covers the first ``limit`` bytes plus a margin, which
bounds the work per event however large the body is.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from typing import Final

import ahocorasick_rs

from cogumi.detect.credentials import CREDENTIAL_LABEL, STEMS, credential_spans
from cogumi.detect.match import SecretMatch
from cogumi.detect.secrets import ANCHORS, lower_same_length, priority, scan_all, select

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


def _merge(
    text: str,
    matches: list[SecretMatch],
    extra: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int, SecretMatch | None]]:
    """Union of all masked spans; each merged span is labelled by the best match inside
    it, or is a bare credential (``None``) when only ``extra`` spans make it up."""
    items: list[tuple[int, int, SecretMatch | None]] = [
        (m.start, _masked_end(text, m.end), m) for m in matches
    ]
    items += [(start, end, None) for start, end in extra]
    spans: list[tuple[int, int, SecretMatch | None]] = []
    for start, end, m in sorted(items, key=lambda item: (item[0], -item[1])):
        if spans and start < spans[-1][1]:
            first, last, top = spans[-1]
            best = m if top is None else top if m is None else min(top, m, key=priority)
            spans[-1] = (first, max(last, end), best)
        else:
            spans.append((start, end, m))
    return spans


def mask(
    text: str,
    matches: list[SecretMatch],
    credentials: Sequence[tuple[int, int]] = (),
) -> str:
    """Replace every matched stretch and every credential span (overlaps merged) with
    its label."""
    out: list[str] = []
    pos = 0
    for start, end, top in _merge(text, matches, credentials):
        out.append(text[pos:start])
        out.append(CREDENTIAL_LABEL if top is None else label(top))
        pos = end
    out.append(text[pos:])
    return "".join(out)


_LITERALS: Final = ahocorasick_rs.AhoCorasick(
    [*ANCHORS, *(stem for stem, _ in STEMS)], implementation=ahocorasick_rs.Implementation.DFA
)
"""The rules' anchors, then the credential patterns' start words: both found in one pass."""


def scan_and_credentials(
    text: str, *, canaries: Collection[str] = ()
) -> tuple[list[SecretMatch], list[tuple[int, int]]]:
    """``scan_all(text)`` and ``credential_spans(text)``, from one lowering of ``text``
    and one automaton pass for the literals both look for (tests/detect/test_prefilter.py
    holds them to the two calls)."""
    if not text:
        return [], []
    low = lower_same_length(text)
    anchors: dict[str, list[int]] = {}
    starts: list[tuple[int, int]] = []
    first_stem = len(ANCHORS)
    for index, start, _ in _LITERALS.find_matches_as_indexes(low, overlapping=True):
        if index < first_stem:
            anchors.setdefault(ANCHORS[index], []).append(start)
        else:
            starts.append((index - first_stem, start))
    hits = scan_all(text, canaries=canaries, anchors=anchors)
    return hits, credential_spans(text, low=low, starts=starts)


def scan_window(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """The part of ``text`` that :func:`redact_text` with this ``limit`` scans."""
    return text[: limit + SCAN_MARGIN]


def needing_scan(texts: Sequence[str], *, canaries: Collection[str] = ()) -> set[int]:
    """The indexes of ``texts`` that may hold something to mask, from one scan of them
    all joined by newlines: those a find of that scan overlaps. A text outside the
    set holds nothing a scan of it alone would find, and redacting it with
    ``clean=True`` skips its scan. Several texts (header values, a path, bodies)
    cost one scan instead of one each, and a secret in one of them costs a second
    scan of that one only; ``tests/detect/test_redact.py`` holds the premise on every
    Nosey Parker example, grouped and cut."""
    joined = "\n".join(texts)
    hits, credentials = scan_and_credentials(joined, canaries=canaries)
    spans = [(m.start, m.end) for m in hits] + credentials
    if not spans:
        return set()
    starts, offset = [], 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 1
    dirty: set[int] = set()
    for start, end in spans:  # the texts [start, end) overlaps
        first = max(bisect_right(starts, start) - 1, 0)
        last = max(bisect_right(starts, max(end - 1, start)) - 1, 0)
        dirty.update(range(first, last + 1))
    return dirty


def nothing_to_mask(texts: Sequence[str], *, canaries: Collection[str] = ()) -> bool:
    """True when :func:`needing_scan` finds no text that may hold something to mask."""
    return not needing_scan(texts, canaries=canaries)


def redact_text(
    text: str, *, canaries: Collection[str] = (), limit: int = DEFAULT_LIMIT, clean: bool = False
) -> tuple[str, list[SecretMatch]]:
    """Mask every secret and every credential given by name (:mod:`credentials`), then
    cut to ``limit`` UTF-8 bytes; returns the matches found (credentials make none).

    ``clean=True`` says :func:`needing_scan` left out :func:`scan_window` of
    ``text``: it is only cut."""
    window = scan_window(text, limit)
    if clean:
        return truncate_utf8(window, limit), []
    everything, credentials = scan_and_credentials(window, canaries=canaries)
    masked = mask(window, everything, credentials)
    return truncate_utf8(masked, limit), select(everything)


@lru_cache(maxsize=1024)
def is_sensitive_header(name: str) -> bool:
    """Headers whose value is a credential by definition, whatever it looks like.
    Cached: a proxy sees the same few header names over and over."""
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
    headers: Iterable[tuple[str, str]], *, canaries: Collection[str] = (), clean: bool = False
) -> tuple[list[tuple[str, str]], list[SecretMatch]]:
    """Mask credential headers whole and secrets inside all other header values.

    Header names stay as they are (they are evidence: *which* credential was
    sent); cookie names stay too, their values go. ``clean=True`` says
    :func:`needing_scan` left out the :func:`scan_window` of the values of the
    other headers: only credential headers are scanned.
    """
    out: list[tuple[str, str]] = []
    matches: list[SecretMatch] = []
    for name, value in headers:
        if is_sensitive_header(name):
            masked, everything = _redact_sensitive(name, value, canaries)
            found = select(everything)  # find_secrets of the same text, without a second scan
        else:
            masked, found = redact_text(value, canaries=canaries, clean=clean)
        out.append((name, masked))
        matches.extend(found)
    return out, matches
