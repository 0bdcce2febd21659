"""Catch-all detectors that are not a single regex: PEM private keys and HIGH_ENTROPY.

HIGH_ENTROPY is deliberately shy (confidence 0.3, 0.45 next to a secret-ish
keyword): it flags long base64/base64url tokens that look generated, and
hexadecimal strings only when a keyword such as ``key`` or ``secret`` stands
just before them, because bare hex in agent output is nearly always a commit
id or a checksum. UUIDs, file paths, identifiers and words never qualify.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cogumi.detect.heuristics import char_classes, looks_random

Hit = tuple[str, int, int, float, str]
"""(kind, start, end, confidence, public prefix) of one finding."""

_PEM_HEADER = re.compile(r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----")
_PEM_FOOTER = re.compile(r"-----END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\r\n\t\\\"' ]*")
_PEM_MAX = 16384
_PUBLIC_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9 ]*PUBLIC KEY|CERTIFICATE[A-Z ]*)-----[\s\S]{0,16384}?-----END [A-Z0-9 ]+-----"
)

_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/_=-])")
"""A candidate token; :func:`token_spans` finds the same spans several times faster."""
_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_CLASSES = bytes(
    ord("a") if c in _TOKEN_CHARS else ord("=") if c == ord("=") else ord(" ") for c in range(256)
)
"""Each byte as its class: a token character (``a``), ``=``, or anything else (space)."""
_RUN = b"a" * 20
_HEX = re.compile(r"^(?:[0-9a-f]+|[0-9A-F]+)$")
_UUIDISH = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_WORDY_SEGMENT = re.compile(r"(?:^|[/_-])[a-z]{4,}(?:[/_-]|$)")
_PATH_SEGMENT = re.compile(r"(?:^|/)(?:[a-z0-9.]{0,5}|[a-z]{4,}[a-z-]*)(?:/|$)")
_SECRET_WORDS = (
    "key",
    "secret",
    "token",
    "passw",
    "pwd",
    "auth",
    "credential",
    "bearer",
    "signature",
)
_HASH_WORDS = (
    "sha",
    "md5",
    "hash",
    "digest",
    "checksum",
    "integrity",
    "commit",
    "etag",
    "rev",
    "#",
    "blob",
    "tree",
    "nonce",
    "uuid",
    "id",
)

HIGH_ENTROPY_CONFIDENCE = 0.3
HIGH_ENTROPY_WITH_KEYWORD = 0.45


def find_private_keys(text: str) -> Iterator[Hit]:
    """PEM private key blocks, from the header to the footer (or to the end of the body).

    A block truncated before its footer is still redacted as far as its base64
    body runs; a header with no real body (documentation) gets a low confidence.
    """
    for header in _PEM_HEADER.finditer(text):
        footer = _PEM_FOOTER.search(text, header.end(), header.end() + _PEM_MAX)
        if footer is not None:
            end = footer.end()
        else:
            body = _PEM_BODY.match(text, header.end(), header.end() + _PEM_MAX)
            end = body.end() if body is not None else header.end()
        body_len = sum(c.isalnum() for c in text[header.end() : end])
        yield "PRIVATE_KEY", header.start(), end, 0.99 if body_len >= 64 else 0.2, "-----BEGIN"


def _pieces(token: str, offset: int) -> Iterator[tuple[str, int]]:
    """Split path-like tokens (``/en/some-page/3.0``) into segments; keep others whole."""
    if "/" in token and _PATH_SEGMENT.search(token):
        pos = 0
        for part in token.split("/"):
            yield part, offset + pos
            pos += len(part) + 1
    else:
        yield token, offset


def _entropy_confidence(value: str, before: str) -> float | None:
    """Confidence for one candidate token, or None when it is not secret-like."""
    core = value.rstrip("=")
    if len(core) < 20:
        return None
    near = before.lower()
    if _HEX.match(core):
        if len(core) < 32 or not _near(near, _SECRET_WORDS) or _near(near[-14:], _HASH_WORDS):
            return None
        return HIGH_ENTROPY_WITH_KEYWORD if looks_random(core, min_ratio=0.7) else None
    if char_classes(core) < 3 or _UUIDISH.match(core) or _WORDY_SEGMENT.search(core):
        return None
    if not looks_random(core, min_ratio=0.8):
        return None
    return HIGH_ENTROPY_WITH_KEYWORD if _near(near, _SECRET_WORDS) else HIGH_ENTROPY_CONFIDENCE


def _near(before: str, words: tuple[str, ...]) -> bool:
    """One of ``words`` occurs in the text just before a candidate (same line only)."""
    line = before.rsplit("\n", 1)[-1]
    return any(word in line for word in words)


def _public_blocks(text: str) -> list[tuple[int, int]]:
    """Spans of PEM public keys and certificates: random-looking, but meant to be shared."""
    if "-----BEGIN" not in text:
        return []
    return [m.span() for m in _PUBLIC_PEM.finditer(text)]


def token_spans(text: str) -> Iterator[tuple[int, int]]:
    """The spans of :data:`_TOKEN` in ``text``, in order, found with byte searches.

    Python's regex engine takes ~10 ns a character of prose to try the pattern at
    every position; here each character becomes its class in one ``translate``
    (a character outside ASCII becomes ``?``, one byte, so offsets stay), and
    ``bytes.find`` jumps from one run of 20 token characters to the next. A run
    becomes a token as the pattern has it: not after ``=``, then at most two ``=``,
    then no token character. ``tests/detect/test_heuristics.py`` holds the two equal.
    """
    classes = text.encode("ascii", "replace").translate(_CLASSES)
    size, pos = len(classes), 0
    while (start := classes.find(_RUN, pos)) >= 0:
        space, equal = classes.find(b" ", start), classes.find(b"=", start)
        end = min(i for i in (space, equal, size) if i >= 0)
        pads = 0  # "=" after the run, counted up to 3 (more than 2: no token)
        while pads < 3 and end + pads < size and classes[end + pads] == 0x3D:  # "="
            pads += 1
        after = end + pads
        if (
            (start == 0 or classes[start - 1] != 0x3D)
            and pads <= 2
            and (after == size or classes[after] != 0x61)  # "a"
        ):
            yield start, after
        pos = after


def find_high_entropy(text: str) -> Iterator[Hit]:
    """Generated-looking tokens that no specific rule claimed."""
    public = _public_blocks(text)
    for token_start, token_end in token_spans(text):
        token = text[token_start:token_end]
        if token.startswith("eyJ") or any(s <= token_start < e for s, e in public):
            continue  # base64 JSON (JWT headers, claims) is data; real JWTs have their own rule
        for piece, start in _pieces(token, token_start):
            before = text[max(0, start - 40) : start]
            confidence = _entropy_confidence(piece, before)
            if confidence is not None:
                yield "HIGH_ENTROPY", start, start + len(piece), confidence, ""
