"""Find secrets in text: kind, sha256, preview and confidence, never the value.

The scan is pure Python regexes behind a literal pre-filter (see
:mod:`cogumi.detect.rules`), chosen over detect-secrets and CredSweeper after
measuring all three on the same data; ``docs/detection.md`` has the figures.

Overlapping hits are resolved so each stretch of text is reported once, by the
most trustworthy finding: a registered canary first, then the highest
confidence, then the longest span.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator

from cogumi.detect.canaries import find_canaries
from cogumi.detect.entropy import find_high_entropy, find_private_keys
from cogumi.detect.heuristics import PLACEHOLDER_CONFIDENCE, is_placeholder
from cogumi.detect.match import SecretMatch, build_match
from cogumi.detect.rules import RULES, Rule

CANARY = "CANARY"
HIGH_ENTROPY = "HIGH_ENTROPY"

__all__ = ["CANARY", "HIGH_ENTROPY", "SecretMatch", "find_secrets", "scan_all", "select"]


_ANY_ANCHOR = re.compile(
    "|".join(
        re.escape(a) for a in sorted({a for r in RULES for a in r.anchors}, key=len, reverse=True)
    )
)
SHORT_TEXT = 128
"""Up to this length one regex search says whether any anchor occurs at all
(most header values and paths hold none); longer texts go rule by rule, where
C-speed ``str.find`` beats the regex engine trying every alternative."""


def _anchor_positions(low: str, anchors: tuple[str, ...]) -> list[int]:
    """Where any of the rule's anchors occurs (C-speed ``str.find``, no regex)."""
    found: set[int] = set()
    for anchor in anchors:
        pos = low.find(anchor)
        while pos != -1:
            found.add(pos)
            pos = low.find(anchor, pos + 1)
    return sorted(found)


def _glued(text: str, pos: int) -> bool:
    """True when ``pos`` continues a longer word, so a prefix there is not a key's start."""
    return pos > 0 and (text[pos - 1].isalnum() or text[pos - 1] == "_")


def _candidates(rule: Rule, text: str, positions: list[int]) -> Iterator[re.Match[str]]:
    if not rule.at_anchor:
        yield from rule.pattern.finditer(text)
        return
    covered = -1
    for pos in positions:
        if pos < covered or (rule.bounded and _glued(text, pos)):
            continue
        m = rule.pattern.match(text, pos)
        if m is not None:
            covered = m.end()
            yield m


def _rule_hits(rule: Rule, text: str, positions: list[int]) -> Iterator[SecretMatch]:
    group: str | int = "secret" if "secret" in rule.pattern.groupindex else 0
    for m in _candidates(rule, text, positions):
        value = m.group(group)
        confidence: float | None = rule.confidence
        if rule.check is not None:
            confidence = rule.check(value, rule.confidence)
        if confidence is None:
            continue
        if is_placeholder(value):
            confidence = min(confidence, PLACEHOLDER_CONFIDENCE)
        yield build_match(
            rule.kind,
            value=value,
            start=m.start(group),
            end=m.end(group),
            confidence=confidence,
            public_prefix=m.groupdict().get("pub") or "",
        )


def _lower_same_length(text: str) -> str:
    """``text.lower()`` with offsets unchanged (a few non-ASCII letters lower to two characters)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _structural_hits(text: str) -> Iterator[SecretMatch]:
    for kind, start, end, confidence, pub in (*find_private_keys(text), *find_high_entropy(text)):
        value = text[start:end]
        if kind == HIGH_ENTROPY and is_placeholder(value):
            continue
        yield build_match(
            kind, value=value, start=start, end=end, confidence=confidence, public_prefix=pub
        )


def scan_all(text: str, *, canaries: Collection[str] = ()) -> list[SecretMatch]:
    """Every hit of every detector, overlaps included (redaction masks their union)."""
    if not text:
        return []
    low = _lower_same_length(text)
    hits: list[SecretMatch] = list(find_canaries(text, canaries))
    if len(low) > SHORT_TEXT or _ANY_ANCHOR.search(low) is not None:
        for rule in RULES:
            positions = _anchor_positions(low, rule.anchors)
            if positions:
                hits.extend(_rule_hits(rule, text, positions))
    hits.extend(_structural_hits(text))
    return hits


def priority(match: SecretMatch) -> tuple[int, float, int, int]:
    """Sort key, best first: canaries, then confidence, then the longer span."""
    return (match.kind != CANARY, -match.confidence, -(match.end - match.start), match.start)


def select(matches: Iterable[SecretMatch]) -> list[SecretMatch]:
    """Keep the best non-overlapping matches, in text order."""
    kept: list[SecretMatch] = []
    for match in sorted(matches, key=priority):
        if all(match.end <= k.start or match.start >= k.end for k in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


def find_secrets(text: str, *, canaries: Collection[str] = ()) -> list[SecretMatch]:
    """Secrets in ``text``, one match per stretch of text, in order of position.

    ``canaries`` are the registered fake secrets of the project or run; any
    sighting of one (verbatim or base64-encoded) is a CANARY match with
    confidence 1.0.
    """
    return select(scan_all(text, canaries=canaries))
