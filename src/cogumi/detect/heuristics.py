"""Small value checks shared by the secret rules.

They decide *how sure* a regex hit is: placeholders (``AKIAIOSFODNN7EXAMPLE``,
``xxxx``, ``<YOUR_KEY>``) keep a match but drop its confidence to
:data:`PLACEHOLDER_CONFIDENCE`, so redaction still hides them while evaluators
(which ignore anything under 0.3) do not raise an alarm on documentation text.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

import ahocorasick_rs

PLACEHOLDER_CONFIDENCE = 0.05
"""Confidence given to a hit whose value is clearly a placeholder."""

PREVIEW_PREFIX_MAX = 8
"""At most this many leading characters of a *public* prefix appear in a preview."""

PREVIEW_TAIL = 2
"""Trailing characters shown in a preview, only for values of 16+ characters."""

_PLACEHOLDER_WORDS = (
    "example",
    "sample",
    "dummy",
    "placeholder",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yoursecret",
    "yourpassword",
    "changeme",
    "change_me",
    "replace_me",
    "replaceme",
    "redacted",
    "notreal",
    "not_a_real",
    "fakekey",
    "fake_key",
    "insert",
    "xxxx",
    "****",
    "....",
    "0000000000",
    "1234567890",
    "abcdefghij",
    "<",
    ">",
    "${",
    "{{",
    "%(",
)
_PLACEHOLDER_MARKERS = ahocorasick_rs.AhoCorasick(
    _PLACEHOLDER_WORDS, implementation=ahocorasick_rs.Implementation.DFA
)
"""All the words in one automaton: one pass over a value instead of one search each."""
_REPEATED_RUN = re.compile(r"(.)\1{7,}")
_PLACEHOLDER_VALUES = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "changeit",
        "none",
        "null",
        "true",
        "false",
        "undefined",
        "empty",
        "test",
        "testing",
        "admin",
        "root",
        "user",
        "username",
        "pass",
        "not-set",
        "notset",
    }
)


def is_placeholder(value: str) -> bool:
    """True when ``value`` looks like documentation filler rather than a live secret.

    A random 20+ character key contains none of these markers except by a
    vanishingly small chance, so the check costs almost no recall.
    """
    low = value.lower()
    if low in _PLACEHOLDER_VALUES:
        return True
    if _PLACEHOLDER_MARKERS.find_matches_as_indexes(low):
        return True
    return _REPEATED_RUN.search(value) is not None


_XLOGX = tuple(0.0 if n == 0 else n * math.log2(n) for n in range(4097))
_LOWER = frozenset(string.ascii_lowercase)
_UPPER = frozenset(string.ascii_uppercase)
_DIGITS = frozenset(string.digits)


def _xlogx(n: int) -> float:
    return _XLOGX[n] if n <= 4096 else n * math.log2(n)


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (0 for an empty string)."""
    if not value:
        return 0.0
    total = len(value)
    counts = Counter(value).values()
    table = _XLOGX.__getitem__ if total <= 4096 else _xlogx
    return math.log2(total) - sum(map(table, counts)) / total


def looks_random(value: str, *, min_ratio: float = 0.8) -> bool:
    """Entropy close to the maximum a string of this length could reach.

    The ceiling for ``n`` characters is ``log2(min(n, 64))``; random keys land
    near it while words, paths and repeated filler fall well below.
    """
    ceiling = math.log2(max(2, min(len(value), 64)))
    return shannon_entropy(value) >= min_ratio * ceiling


_DIGIT_BYTES = b"0123456789"
_LONG = 96  # from this length, three whole-string C passes beat building the set


def char_classes(value: str) -> int:
    """How many of ASCII lower case, upper case and digits ``value`` mixes."""
    if len(value) >= _LONG and value.isascii():  # a 1 KB token: about 1 µs instead of 8
        raw = value.encode("ascii")
        return (
            (raw.upper() != raw)
            + (raw.lower() != raw)
            + (len(raw.translate(None, _DIGIT_BYTES)) != len(raw))
        )
    chars = set(value)
    return (
        (not _LOWER.isdisjoint(chars))
        + (not _UPPER.isdisjoint(chars))
        + (not _DIGITS.isdisjoint(chars))
    )


def make_preview(value: str, public_prefix: str = "") -> str:
    """``sk-…d9`` style preview: the public prefix (capped) and the last two characters.

    The prefix is the documented, non-secret part of a key format (``sk-proj-``,
    ``AKIA``, ``ghp_``); values shorter than 16 characters show no tail at all
    because two characters of a short password are a real hint.
    """
    head = public_prefix[:PREVIEW_PREFIX_MAX] if value.startswith(public_prefix) else ""
    tail = value[-PREVIEW_TAIL:] if len(value) >= 16 else ""
    return f"{head}…{tail}"
