"""The match record shared by every detector."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cogumi.detect.heuristics import make_preview


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """One finding. ``start``/``end`` locate it for redaction and are never stored."""

    kind: str
    hash: str
    preview: str
    confidence: float
    start: int
    end: int

    def to_dict(self) -> dict[str, str | float]:
        """The storable part: what the event's ``matches`` list carries."""
        return {
            "kind": self.kind,
            "hash": self.hash,
            "preview": self.preview,
            "confidence": self.confidence,
        }


def sha256_hex(value: str) -> str:
    """The hash every match carries, so findings can be correlated without the value."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def build_match(
    kind: str,
    *,
    value: str,
    start: int,
    end: int,
    confidence: float,
    public_prefix: str = "",
) -> SecretMatch:
    """Make a match from the raw value, which is hashed and then dropped."""
    return SecretMatch(
        kind=kind,
        hash=sha256_hex(value),
        preview=make_preview(value, public_prefix),
        confidence=round(max(0.0, min(1.0, confidence)), 2),
        start=start,
        end=end,
    )
