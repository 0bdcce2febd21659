"""Tables of the engine: prompt variants kept per project, custom scripts per org."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin, utcnow


class PromptVariant(IdMixin, TenantMixin, TimestampMixin, Base):
    """One phrasing of a script step in one attack style, reused across a project's runs.

    ``text`` is the rendered template before per-turn values (nonce, sink
    domain...) are filled in. ``source`` is ``builtin`` (rendered from the
    library's styles), ``generated`` (an adaptive adversary) or ``customer``.
    """

    __tablename__ = "prompt_variants"
    __table_args__ = (
        UniqueConstraint("project_id", "text_hash"),
        Index("ix_prompt_variants_step", "project_id", "script_id", "step_id"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    script_id: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(64))
    style: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(8000))
    text_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="builtin")
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    use_count: Mapped[int] = mapped_column(Integer, default=0)


class CustomLibrary(IdMixin, TenantMixin, TimestampMixin, Base):
    """An org's own techniques and scripts, in the attack library's data format."""

    __tablename__ = "custom_libraries"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    name: Mapped[str] = mapped_column(String(120))
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    script_ids: Mapped[list[str]] = mapped_column(default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
