"""The ``reports`` table: one row per generated report version and format.

A version is tied to the run's *state digest* (status, risk score, results,
findings and their triage): asking again for an unchanged run returns the
stored version, while new triage on a finished run produces the next one.
The rendered text is kept so a download always returns exactly what was
generated (``content_hash`` is its sha256).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin

REPORT_FORMATS = ("md", "html")


class Report(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("run_id", "version", "format"),
        Index("ix_reports_run_digest", "run_id", "state_digest"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    content_hash: Mapped[str] = mapped_column(String(64))
    state_digest: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
