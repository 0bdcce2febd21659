"""Tables of the projects area."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin, utcnow


class Environment(enum.StrEnum):
    sandbox = "sandbox"
    staging = "staging"
    prod = "prod"


class TokenStatus(enum.StrEnum):
    active = "active"
    revoked = "revoked"


DEFAULT_SINK_DOMAINS = ["attacker-sink.local"]


class Project(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(2000), default="")
    environment: Mapped[Environment] = mapped_column(
        Enum(Environment, name="environment", native_enum=False, length=16),
        default=Environment.sandbox,
    )
    prod_override_enabled: Mapped[bool] = mapped_column(default=False)
    prod_override_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    prod_override_at: Mapped[datetime | None] = mapped_column(default=None)
    agent_test_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    adapter: Mapped[dict[str, Any]] = mapped_column(default=lambda: {"kind": "native"})
    tool_domains: Mapped[list[str]] = mapped_column(default=list)
    internal_suffixes: Mapped[list[str]] = mapped_column(default=list)
    sensitive_paths: Mapped[list[str]] = mapped_column(default=list)
    sink_domains: Mapped[list[str]] = mapped_column(default=lambda: list(DEFAULT_SINK_DOMAINS))
    retention_days: Mapped[int] = mapped_column(Integer, default=7)
    redteam: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SidecarToken(IdMixin, TenantMixin, TimestampMixin, Base):
    """Project-scoped ingest token ``cgs_<prefix>_<secret>``; prefix + sha256 kept."""

    __tablename__ = "sidecar_tokens"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(120), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[TokenStatus] = mapped_column(
        Enum(TokenStatus, name="token_status", native_enum=False, length=16),
        default=TokenStatus.active,
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    events_accepted: Mapped[int] = mapped_column(Integer, default=0)
    events_dropped: Mapped[int] = mapped_column(Integer, default=0)


class Canary(IdMixin, TenantMixin, TimestampMixin, Base):
    """A fake secret the platform minted for a project's sandbox; only hash + preview kept.

    Any later sighting of a value with this hash (in a reply, an outbound
    request, at the sink) is a confirmed leak: nobody else could know it.
    """

    __tablename__ = "canaries"
    __table_args__ = (UniqueConstraint("project_id", "hash"),)

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(String(64))
    preview: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(120), default="")
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
