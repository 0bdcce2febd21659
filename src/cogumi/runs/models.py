"""Tables of a campaign run: the run itself, its per-script results and its story.

A run's lifecycle is ``queued -> running -> completed | failed | canceled |
stopped_quota``. While it runs, a worker holds a lease on the row
(``lease_owner`` + ``lease_expires_at``) and renews it; a lease that expires
means the worker died, and the reaper re-queues or fails the run.

At most one run per project is queued or running at any time (a partial
unique index, so two concurrent starts cannot both win): a second campaign
would attach its traffic to the first one's evidence windows.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, Float, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin, utcnow


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"
    stopped_quota = "stopped_quota"


ACTIVE_STATUSES = (RunStatus.queued, RunStatus.running)
TERMINAL_STATUSES = frozenset(
    {RunStatus.completed, RunStatus.failed, RunStatus.canceled, RunStatus.stopped_quota}
)
_ONE_ACTIVE = text("status IN ('queued', 'running')")


class ScriptResultValue(enum.StrEnum):
    passed = "pass"
    fail = "fail"
    blocked = "blocked"
    inconclusive = "inconclusive"


class Severity(enum.StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class StepKind(enum.StrEnum):
    attempt = "attempt"
    confirmed = "confirmed"
    blocked = "blocked"
    info = "info"
    quota = "quota"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class Run(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_project_status", "project_id", "status"),
        Index("ix_runs_project_created", "project_id", "created_at"),
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        Index(
            "uq_runs_one_active_per_project",
            "project_id",
            unique=True,
            sqlite_where=_ONE_ACTIVE,
            postgresql_where=_ONE_ACTIVE,
        ),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[RunStatus] = mapped_column(
        Enum(RunStatus, name="run_status", native_enum=False, length=16),
        default=RunStatus.queued,
    )
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    # Snapshot of the project config, scripts, intensity and styles at creation.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    failure_reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the run's job was last handed to the queue (the reaper re-sends stale ones).
    enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    duration_cap_sec: Mapped[int] = mapped_column(Integer, default=900)
    # Last ``seq`` handed out to this run's events; bumped under a row lock.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Last id of the run's live stream messages (SSE ``id:``), same scheme.
    last_stream_seq: Mapped[int] = mapped_column(Integer, default=0)


class ScriptResult(IdMixin, TenantMixin, TimestampMixin, Base):
    """The verdict of one script in one run (every script of a run gets one)."""

    __tablename__ = "script_results"
    __table_args__ = (UniqueConstraint("run_id", "script_id"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    script_id: Mapped[str] = mapped_column(String(64))
    technique_id: Mapped[str] = mapped_column(String(128))
    result: Mapped[ScriptResultValue] = mapped_column(_enum(ScriptResultValue, "script_result"))
    score: Mapped[int] = mapped_column(Integer, default=0)
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "severity"))
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    summary: Mapped[str] = mapped_column(String(4000), default="")


class StoryStep(IdMixin, TenantMixin, Base):
    """One claim-first item of the run's exploit feed, pointing at its evidence events."""

    __tablename__ = "story_steps"
    __table_args__ = (Index("ix_story_steps_run_order", "run_id", "seq_end", "ts"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    seq_start: Mapped[int | None] = mapped_column(Integer, default=None)
    seq_end: Mapped[int | None] = mapped_column(Integer, default=None)
    script_id: Mapped[str | None] = mapped_column(String(64), default=None)
    step_kind: Mapped[StepKind] = mapped_column(_enum(StepKind, "step_kind"))
    severity: Mapped[Severity] = mapped_column(_enum(Severity, "severity"), default=Severity.info)
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    claim_title: Mapped[str] = mapped_column(String(300))
    claim_summary: Mapped[str] = mapped_column(String(4000), default="")
    attack_style: Mapped[str | None] = mapped_column(String(64), default=None)
    evidence_event_ids: Mapped[list[str]] = mapped_column(default=list)
    finding_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), default=None
    )
