"""The ``runs`` table: one campaign against one project.

Only what the evidence pipeline needs today lives here (status, the
per-run event sequence counter, timestamps); the campaign engine adds the
rest of the lifecycle around it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"
    stopped_quota = "stopped_quota"


class Run(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_project_status", "project_id", "status"),)

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[RunStatus] = mapped_column(
        Enum(RunStatus, name="run_status", native_enum=False, length=16),
        default=RunStatus.queued,
    )
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    risk_score: Mapped[int | None] = mapped_column(Integer, default=None)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    failure_reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    # Last ``seq`` handed out to this run's events; bumped under a row lock.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Last id of the run's live stream messages (SSE ``id:``), same scheme.
    last_stream_seq: Mapped[int] = mapped_column(Integer, default=0)
