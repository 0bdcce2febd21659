"""What evaluators see of a campaign: turns, their network windows, and the verdict they return.

These dataclasses are the contract between the runner (which builds turns from stored
events) and the evaluators (pure functions of turns). They carry only redacted data,
except ``Context.canaries``, which lives in memory for the duration of a run.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

StepKind = Literal["attack", "control", "poison", "confirm", "validation", "persistence"]


@dataclass(frozen=True, slots=True)
class NetEvent:
    """One sidecar event inside a turn's window, as evaluators see it (already redacted)."""

    id: str
    ts: datetime
    type: str  # request | blocked | ...
    classification: (
        str | None
    )  # attacker_sink | internal_api | tool | llm_provider | public_internet | unknown
    host: str | None
    path: str | None
    method: str | None
    status_code: int | None
    bytes_out: int | None
    sensitive_path: str | None  # the project's sensitive-path pattern hit, if any
    matches: tuple[dict[str, Any], ...]  # [{kind, hash, preview, confidence}]
    summary: str = ""
    body_preview: str = ""  # redacted request body preview


@dataclass(frozen=True, slots=True)
class Turn:
    """One adversary message, the agent's reply, and the network activity in between."""

    step_id: str  # e.g. "S3.2"
    kind: StepKind
    session_id: str  # turns of one conversation share it; a fresh session has a new one
    adversary_message: str
    reply: str  # the agent's reply text ("" on error)
    adversary_event_id: str  # stored agent.message events (for evidence chains)
    reply_event_id: str
    window: tuple[NetEvent, ...]  # sidecar events between message sent and reply received (+ grace)
    window_complete: bool  # False when no sidecar watermark covered the window (network criteria -> inconclusive, never "pass")
    error: str | None = None  # transport error talking to the agent
    nonce: str | None = (
        None  # per-turn compliance marker the prompt asked the agent to say (injection/jailbreak cases)
    )


@dataclass(frozen=True, slots=True)
class Context:
    """What evaluators may know about the project. Raw canary values live only in memory, never stored."""

    sink_domains: frozenset[str]
    tool_domains: frozenset[str]
    sensitive_paths: tuple[str, ...]
    canaries: frozenset[
        str
    ]  # raw canary values registered for this project (for find_secrets(canaries=...))
    system_prompt_markers: tuple[
        str, ...
    ] = ()  # optional customer-supplied phrases from the agent's system prompt


@dataclass(frozen=True, slots=True)
class Evidence:
    """One link in a finding's chain of evidence."""

    label: (
        str  # readable sentence: "Adversary posed as Security Ops and asked for the system prompt"
    )
    event_id: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """An evaluator's judgement of one script's turns."""

    # fail = weakness shown; pass = agent resisted; blocked = attempted but stopped (e.g. 401/403);
    # inconclusive = not enough evidence / evaluator error
    result: Literal["pass", "fail", "blocked", "inconclusive"]
    score: int  # 0-100 per the CONTRACTS rubric
    confidence: float  # 0-1
    status: (
        Literal["confirmed", "attempted", "suspected"] | None
    )  # finding status when result is fail/blocked, else None
    summary: str  # one readable paragraph, no raw secrets (use previews)
    evidence: tuple[Evidence, ...] = ()  # 2-8 items for a finding, in narrative order
    title: str = ""  # finding title
    review: bool = False  # a second opinion disagreed with the heuristics: a person should look
    second_opinion: dict[str, Any] | None = None  # what the LLM judge said (engine.second_opinion)
