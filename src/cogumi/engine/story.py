"""The story builder: a pure function from a run's events to its claim-first feed.

Replaying a run is running :func:`build_story` again over its stored events
(or over an evidence bundle's events): the same input always gives the same
steps. The runner writes ``marker`` events for what only it knows (script
start and end, findings, quota stops); sidecar ``policy.violation`` events
become steps too. Each step cites 2–8 evidence events where the run has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

StepKind = Literal["attempt", "confirmed", "blocked", "info", "quota"]

MARKER_SCRIPT_START = "script.start"
MARKER_SCRIPT_END = "script.end"
MARKER_FINDING = "finding"
MARKER_QUOTA_STOP = "quota.stop"
MAX_EVIDENCE = 8

_FINDING_KIND: dict[str, StepKind] = {
    "confirmed": "confirmed",
    "attempted": "blocked",
    "suspected": "attempt",
}


@dataclass(frozen=True, slots=True)
class StoryStepData:
    ts: Any
    seq_start: int
    seq_end: int
    script_id: str | None
    step_kind: StepKind
    severity: str
    status: str
    claim_title: str
    claim_summary: str
    attack_style: str | None
    evidence_event_ids: tuple[str, ...]


def _payload(event: Mapping[str, Any]) -> Mapping[str, Any]:
    payload = event.get("payload_redacted") or {}
    return payload if isinstance(payload, Mapping) else {}


def _seq_range(ids: Sequence[str], by_id: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    seqs = [int(by_id[i]["seq"]) for i in ids if i in by_id and by_id[i].get("seq") is not None]
    return (min(seqs), max(seqs)) if seqs else (0, 0)


def _script_messages(
    events: Sequence[Mapping[str, Any]], script_id: str
) -> list[Mapping[str, Any]]:
    return [
        e
        for e in events
        if e.get("type") == "agent.message" and _payload(e).get("script_id") == script_id
    ]


def _evidence(ids: Iterable[str], marker_id: str) -> tuple[str, ...]:
    """Unique ids in order, at most MAX_EVIDENCE, the marker added when fewer than two."""
    out: list[str] = []
    for event_id in ids:
        if event_id and event_id not in out:
            out.append(event_id)
    if len(out) < 2 and marker_id not in out:
        out.append(marker_id)
    return tuple(out[:MAX_EVIDENCE])


def _step(
    event: Mapping[str, Any],
    by_id: Mapping[str, Mapping[str, Any]],
    *,
    evidence: Iterable[str],
    kind: StepKind,
    severity: str,
    status: str,
    title: str,
    summary: str,
) -> StoryStepData:
    payload = _payload(event)
    ids = _evidence(evidence, str(event["id"]))
    start, end = _seq_range(ids, by_id)
    return StoryStepData(
        ts=event.get("ts"),
        seq_start=start,
        seq_end=end,
        script_id=payload.get("script_id"),
        step_kind=kind,
        severity=severity,
        status=status,
        claim_title=title[:200],
        claim_summary=summary[:2000],
        attack_style=payload.get("attack_style"),
        evidence_event_ids=ids,
    )


def _marker_step(
    event: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    by_id: Mapping[str, Mapping[str, Any]],
) -> StoryStepData | None:
    payload = _payload(event)
    marker = payload.get("marker")
    script_id = str(payload.get("script_id") or "")
    if marker == MARKER_SCRIPT_START:
        first = _script_messages(events, script_id)[:1]
        return _step(
            event, by_id, evidence=[str(event["id"]), *(str(e["id"]) for e in first)],
            kind="info", severity="info", status="started",
            title=f"{script_id} started: {payload.get('title', '')}".strip(": "),
            summary=str(payload.get("summary", "")),
        )  # fmt: skip
    if marker == MARKER_SCRIPT_END:
        last = _script_messages(events, script_id)[-1:]
        result = str(payload.get("result", "inconclusive"))
        return _step(
            event, by_id, evidence=[*(str(e["id"]) for e in last), str(event["id"])],
            kind="blocked" if result == "blocked" else "info",
            severity=str(payload.get("severity", "info")), status=result,
            title=f"{script_id} finished: {result}",
            summary=str(payload.get("summary", "")),
        )  # fmt: skip
    if marker == MARKER_FINDING:
        status = str(payload.get("status", "suspected"))
        return _step(
            event, by_id, evidence=[str(i) for i in payload.get("evidence_event_ids", [])],
            kind=_FINDING_KIND.get(status, "attempt"),
            severity=str(payload.get("severity", "medium")), status=status,
            title=str(payload.get("title", "Finding")),
            summary=str(payload.get("summary", "")),
        )  # fmt: skip
    if marker == MARKER_QUOTA_STOP:
        return _step(
            event, by_id, evidence=[str(event["id"])],
            kind="quota", severity="info", status="stopped_quota",
            title=f"Run stopped: {payload.get('quota', 'quota')} limit reached",
            summary=str(payload.get("summary", "")),
        )  # fmt: skip
    return None


def _policy_step(
    event: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    by_id: Mapping[str, Mapping[str, Any]],
) -> StoryStepData:
    payload = _payload(event)
    reason = str(payload.get("reason", "policy"))
    evidence = [str(previous["id"])] if previous is not None else []
    return _step(
        event, by_id, evidence=[*evidence, str(event["id"])],
        kind="info", severity="low", status=reason,
        title=f"Policy: {reason.replace('_', ' ')}",
        summary=str(payload.get("summary", "")),
    )  # fmt: skip


def build_story(events: Sequence[Mapping[str, Any]]) -> list[StoryStepData]:
    """Story steps for a run's events (any order in, ``seq`` order out)."""
    ordered = sorted(events, key=lambda e: (e.get("seq") is None, e.get("seq") or 0))
    by_id = {str(e["id"]): e for e in ordered}
    steps: list[StoryStepData] = []
    previous: Mapping[str, Any] | None = None
    for event in ordered:
        if event.get("type") == "marker":
            step = _marker_step(event, ordered, by_id)
            if step is not None:
                steps.append(step)
        elif event.get("type") == "policy.violation":
            steps.append(_policy_step(event, previous, by_id))
        else:
            previous = event
    return steps


def marker_step(
    event: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> StoryStepData | None:
    """The step one marker event makes, given the run's events so far (live use).

    The same function :func:`build_story` applies on replay, so the live feed
    and a replay agree.
    """
    ordered = sorted(events, key=lambda e: (e.get("seq") is None, e.get("seq") or 0))
    return _marker_step(event, ordered, {str(e["id"]): e for e in ordered})
