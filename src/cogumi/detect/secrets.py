"""Find secrets in text: kind, sha256, preview and confidence, never the value.

The scan is pure Python regexes behind a literal pre-filter (see
:mod:`cogumi.detect.rules`): one Aho-Corasick pass finds where the rules'
anchors occur and only those rules run, from those places. Chosen over
detect-secrets and CredSweeper after measuring all three on the same data;
``docs/detection.md`` has the figures.

Overlapping hits are resolved so each stretch of text is reported once, by the
most trustworthy finding: a registered canary first, then the highest
confidence, then the longest span.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator

import ahocorasick_rs

from cogumi.detect.canaries import find_canaries
from cogumi.detect.entropy import find_high_entropy, find_private_keys
from cogumi.detect.heuristics import PLACEHOLDER_CONFIDENCE, is_placeholder
from cogumi.detect.match import SecretMatch, build_match
from cogumi.detect.rules import RULES, Rule

CANARY = "CANARY"
HIGH_ENTROPY = "HIGH_ENTROPY"

__all__ = ["CANARY", "HIGH_ENTROPY", "SecretMatch", "find_secrets", "scan_all", "select"]


ANCHORS: tuple[str, ...] = tuple(sorted({a for rule in RULES for a in rule.anchors}))
_ANCHORS = ahocorasick_rs.AhoCorasick(ANCHORS, implementation=ahocorasick_rs.Implementation.DFA)
"""Every rule anchor in one Aho-Corasick automaton: one pass over a text finds all
their occurrences, however many rules there are (a DFA: about 2 ns a character)."""


def _rules_by_anchor() -> dict[str, tuple[int, ...]]:
    """For each anchor, the indexes in :data:`RULES` of the rules it can start: a scan
    visits only the rules whose anchors it met (asking every rule cost ~0.5 µs each)."""
    rules_of: dict[str, tuple[int, ...]] = {}
    for index, rule in enumerate(RULES):
        for anchor in rule.anchors:
            rules_of[anchor] = (*rules_of.get(anchor, ()), index)
    return rules_of


_RULES_OF = _rules_by_anchor()


def _anchor_occurrences(low: str) -> dict[str, list[int]]:
    """Start positions of every anchor occurrence (overlaps included), in text order."""
    found: dict[str, list[int]] = {}
    for index, start, _ in _ANCHORS.find_matches_as_indexes(low, overlapping=True):
        found.setdefault(ANCHORS[index], []).append(start)
    return found


def _anchor_positions(found: dict[str, list[int]], anchors: tuple[str, ...]) -> list[int]:
    """Where any of the rule's anchors occurs, sorted, each position once."""
    lists = [found[a] for a in anchors if a in found]
    if len(lists) == 1:
        return lists[0]
    return sorted({pos for positions in lists for pos in positions})


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


def lower_same_length(text: str) -> str:
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


def scan_all(
    text: str,
    *,
    canaries: Collection[str] = (),
    anchors: dict[str, list[int]] | None = None,
) -> list[SecretMatch]:
    """Every hit of every detector, overlaps included (redaction masks their union).

    ``anchors`` are where :data:`ANCHORS` occur in ``text`` lowered, when the caller
    found them already (see :func:`cogumi.detect.redact.scan_and_credentials`)."""
    if not text:
        return []
    hits: list[SecretMatch] = list(find_canaries(text, canaries))
    found = _anchor_occurrences(lower_same_length(text)) if anchors is None else anchors
    if found:
        indexes = {i for anchor in found for i in _RULES_OF[anchor]}
        for index in sorted(indexes):  # in RULES order, as before the index existed
            rule = RULES[index]
            hits.extend(_rule_hits(rule, text, _anchor_positions(found, rule.anchors)))
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
