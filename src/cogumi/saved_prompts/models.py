"""The ``saved_prompts`` table: an org's adversary prompts and agent replies kept for reuse."""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin


class PromptKind(enum.StrEnum):
    adversary = "adversary"
    reply = "reply"


class SavedPrompt(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "saved_prompts"
    __table_args__ = (Index("ix_saved_prompts_org_created", "org_id", "created_at"),)

    title: Mapped[str] = mapped_column(String(160))
    kind: Mapped[PromptKind] = mapped_column(
        Enum(PromptKind, name="saved_prompt_kind", native_enum=False, length=16)
    )
    text: Mapped[str] = mapped_column(String(4000))
    tags: Mapped[list[str]] = mapped_column(default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
