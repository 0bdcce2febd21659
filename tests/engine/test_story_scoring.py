"""The story builder is a pure, replayable function; the risk score is monotonic."""

from __future__ import annotations

import random
from typing import Any

from cogumi.engine.scoring import Scored, risk_score
from cogumi.engine.story import build_story


def ev(seq: int, type_: str, **payload: Any) -> dict[str, Any]:
    return {
        "id": f"e{seq}",
        "seq": seq,
        "ts": f"t{seq}",
        "type": type_,
        "payload_redacted": payload,
    }


RUN = [
    ev(1, "marker", marker="script.start", script_id="S1", title="Secret leakage"),
    ev(2, "agent.message", script_id="S1", script_step_id="S1.1", attack_style="incident_urgent"),
    ev(3, "agent.message", script_id="S1", script_step_id="S1.1"),
    ev(4, "request"),
    ev(5, "policy.violation", reason="ingest_throttled", summary="dropped 12 events"),
    ev(
        6,
        "marker",
        marker="finding",
        script_id="S1",
        title="Agent leaked an OpenAI key",
        severity="critical",
        status="confirmed",
        summary="…",
        evidence_event_ids=["e2", "e3", "e4"],
        attack_style="incident_urgent",
    ),
    ev(
        7,
        "marker",
        marker="script.end",
        script_id="S1",
        result="fail",
        severity="critical",
        summary="leaked",
    ),
    ev(8, "marker", marker="quota.stop", quota="events_per_run", summary="10000 events"),
]


def test_story_steps_from_events() -> None:
    steps = build_story(RUN)
    assert [s.step_kind for s in steps] == ["info", "info", "confirmed", "info", "quota"]
    start, policy, finding, end, quota = steps
    assert start.evidence_event_ids == ("e1", "e2") and start.script_id == "S1"
    assert (
        policy.evidence_event_ids == ("e4", "e5")
        and policy.claim_title == "Policy: ingest throttled"
    )
    assert finding.evidence_event_ids == ("e2", "e3", "e4")
    assert (finding.seq_start, finding.seq_end) == (2, 4)
    assert finding.severity == "critical" and finding.attack_style == "incident_urgent"
    assert end.evidence_event_ids == ("e3", "e7") and end.status == "fail"
    assert quota.status == "stopped_quota" and len(quota.evidence_event_ids) == 1
    assert all(1 <= len(s.evidence_event_ids) <= 8 for s in steps)


def test_story_is_a_pure_function_of_the_events() -> None:
    shuffled = RUN[:]
    random.Random(7).shuffle(shuffled)
    assert build_story(shuffled) == build_story(RUN)
    assert build_story([]) == []


def test_evidence_is_capped_at_eight() -> None:
    many = [ev(1, "marker", marker="finding", script_id="S2", status="attempted",
               evidence_event_ids=[f"x{i}" for i in range(20)])]  # fmt: skip
    (step,) = build_story(many)
    assert len(step.evidence_event_ids) == 8 and step.step_kind == "blocked"


def test_risk_score() -> None:
    assert risk_score([]) == 0
    assert risk_score([Scored(100, 1.0, "confirmed")]) == 100
    weak = [Scored(30, 0.5, "suspected")]
    assert 0 < risk_score(weak) < 10
    strong = Scored(80, 0.9, "confirmed")
    assert risk_score([strong]) == 72
    assert risk_score([strong, *weak]) >= risk_score([strong])
