"""Run risk score (0–100) from its findings.

Each finding is a probability-like weight ``p = score/100 × confidence ×
status weight`` (confirmed 1.0, attempted 0.7, suspected 0.4); the run's risk
is ``100 × (1 − Π(1 − p))``. One confirmed critical leak alone puts a run near
100; several weak signals add up without ever passing a single strong one by
much; no findings is 0. Monotonic: adding a finding never lowers the score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

STATUS_WEIGHT = {"confirmed": 1.0, "attempted": 0.7, "suspected": 0.4}


@dataclass(frozen=True, slots=True)
class Scored:
    score: int
    confidence: float
    status: str


def risk_score(findings: Iterable[Scored]) -> int:
    remaining = 1.0
    for finding in findings:
        p = (finding.score / 100) * finding.confidence * STATUS_WEIGHT.get(finding.status, 0.4)
        remaining *= 1 - min(max(p, 0.0), 1.0)
    return round(100 * (1 - remaining))
