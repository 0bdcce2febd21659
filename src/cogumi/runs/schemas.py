"""Request and response bodies of the runs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from cogumi.projects.schemas import MAX_LIST_ITEMS, AttackStyle, Intensity
from cogumi.runs.models import RunStatus
from cogumi.schemas import Input, Output

ScriptId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RunCreate(Input):
    """Overrides of the project's red-team config for this run; omitted fields use the project's."""

    scripts: Annotated[list[ScriptId], Field(min_length=1, max_length=MAX_LIST_ITEMS)] | None = (
        Field(default=None, description="Script ids to run (S1..S5, P01..P16, custom ids).")
    )
    intensity: Intensity | None = Field(default=None, description="Variants per step: 1/2/3.")
    styles: Annotated[list[AttackStyle], Field(min_length=1, max_length=6)] | None = Field(
        default=None, description="Attack styles to use."
    )


class RunOut(Output):
    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    risk_score: int | None
    config: dict[str, Any] = Field(description="Snapshot taken when the run was created.")
    created_by: uuid.UUID | None
    failure_reason: str | None
    cancel_requested_at: datetime | None
    attempts: int
    duration_cap_sec: int


class RunCreated(RunOut):
    warning: str | None = Field(
        default=None, description="Set when the project's environment deserves a second look."
    )


class RunPage(Output):
    items: list[RunOut]
    next_cursor: str | None


class ScriptResultOut(Output):
    id: uuid.UUID
    run_id: uuid.UUID
    script_id: str
    technique_id: str
    result: Literal["pass", "fail", "blocked", "inconclusive"]
    score: int
    severity: str
    confidence: float
    summary: str
    created_at: datetime


class ScriptResultList(Output):
    items: list[ScriptResultOut]


class StoryStepOut(Output):
    id: uuid.UUID
    run_id: uuid.UUID
    ts: datetime
    seq_start: int | None
    seq_end: int | None
    script_id: str | None
    step_kind: str
    severity: str
    status: str | None
    claim_title: str
    claim_summary: str
    attack_style: str | None
    evidence_event_ids: list[str]
    finding_id: uuid.UUID | None


class StoryStepList(Output):
    items: list[StoryStepOut]
