"""Response shapes of the reports API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from cogumi.schemas import Output


class ReportOut(Output):
    run_id: uuid.UUID
    state: Literal["queued", "ready"]
    version: int | None
    content_hash: str | None
    created_at: datetime | None


class RunRef(Output):
    id: uuid.UUID
    status: str
    risk_score: int | None
    created_at: datetime
    ended_at: datetime | None


class CompareItem(Output):
    fingerprint: str
    finding_id: uuid.UUID
    script_id: str
    technique_id: str
    category: str
    title: str
    severity: str
    status: str
    score: int
    triage_status: str
    regression: bool


class CategoryChange(Output):
    category: str
    before: int
    after: int
    delta: int


class CompareOut(Output):
    run: RunRef
    base_run: RunRef | None
    risk_delta: int | None
    new: list[CompareItem]
    persisting: list[CompareItem]
    fixed: list[CompareItem]
    regressions: list[str]
    categories: list[CategoryChange]
