"""The ``findings`` table (CONTRACTS.md "Finding").

``fingerprint`` is stable across runs of a project (sha256 of project id,
technique id and script id), so a report can say which findings are new,
fixed or persisting. A run holds at most one finding per fingerprint.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Enum, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin, utcnow
from cogumi.runs.models import Severity


class FindingStatus(enum.StrEnum):
    confirmed = "confirmed"
    attempted = "attempted"
    suspected = "suspected"


class TriageStatus(enum.StrEnum):
    open = "open"
    fixed = "fixed"
    accepted = "accepted"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=16)


class Finding(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("run_id", "fingerprint"),
        Index("ix_findings_project_fingerprint", "project_id", "fingerprint"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    script_id: Mapped[str] = mapped_column(String(64))
    technique_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[Severity] = mapped_column(
        Enum(Severity, name="severity", native_enum=False, length=16)
    )
    status: Mapped[FindingStatus] = mapped_column(_enum(FindingStatus, "finding_status"))
    score: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(String(4000), default="")
    evidence_event_ids: Mapped[list[str]] = mapped_column(default=list)
    # [{label, event_id}] in narrative order: the proof drawer's chain of evidence.
    narrative_steps: Mapped[list[Any]] = mapped_column(default=list)
    remediation_md: Mapped[str] = mapped_column(String(20000), default="")
    # {"llm": ["LLM02:2025"], "agentic": [...]}
    owasp: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fingerprint: Mapped[str] = mapped_column(String(64))
    triage_status: Mapped[TriageStatus] = mapped_column(
        _enum(TriageStatus, "triage_status"), default=TriageStatus.open
    )
    owner: Mapped[str | None] = mapped_column(String(320), default=None)
    eta: Mapped[date | None] = mapped_column(Date, default=None)
    why_it_works: Mapped[str] = mapped_column(String(4000), default="")
    verification_step: Mapped[str] = mapped_column(String(4000), default="")
    triaged_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
