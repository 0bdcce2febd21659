"""Append-only event store, ingest idempotency and sidecar status.

Events are never updated; the only delete path is retention. The columns a
query filters on (class, host, method, status) are flattened out of the
event; the rest of the redacted payload stays JSON.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, utcnow


class Event(IdMixin, TenantMixin, Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        Index("ix_events_project_received", "project_id", "received_at"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), default=None
    )
    seq: Mapped[int | None] = mapped_column(Integer, default=None)
    ts: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(16))
    dest_host: Mapped[str | None] = mapped_column(String(255), default=None)
    dest_path: Mapped[str | None] = mapped_column(String(2048), default=None)
    dest_port: Mapped[int | None] = mapped_column(Integer, default=None)
    classification: Mapped[str | None] = mapped_column(String(32), default=None)
    sensitive_path: Mapped[str | None] = mapped_column(String(255), default=None)
    http_method: Mapped[str | None] = mapped_column(String(16), default=None)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger, default=None)
    bytes_in: Mapped[int | None] = mapped_column(BigInteger, default=None)
    duration_ms: Mapped[float | None] = mapped_column(default=None)
    payload_redacted: Mapped[dict[str, Any]] = mapped_column(default=dict)
    matches: Mapped[list[Any]] = mapped_column(default=list)
    integrity_hash: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(2048), default=None)
    sidecar_token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sidecar_tokens.id", ondelete="SET NULL"), default=None
    )


class IngestBatch(IdMixin, TenantMixin, Base):
    """One row per accepted batch: a retried ``batch_id`` stores nothing twice."""

    __tablename__ = "ingest_batches"
    __table_args__ = (UniqueConstraint("project_id", "batch_id"),)

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[int] = mapped_column(Integer)
    dropped: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class SidecarStatus(TenantMixin, Base):
    """Latest heartbeat, event time and watermark per sidecar process (the wizard's
    verify step, and the evidence watermark).

    A process is a token and the ``instance_id`` the process made at start: replicas
    of one agent may share a token, and each keeps its own counters and watermark.
    Senders without an instance id (older sidecars) share the row of instance ``""``.
    """

    __tablename__ = "sidecar_status"

    token_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sidecar_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    sidecar_version: Mapped[str] = mapped_column(String(64), default="")
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    last_event_at: Mapped[datetime | None] = mapped_column(default=None)
    counters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Latest ingest watermark of this sidecar (see events.service.watermark_for_project).
    watermark: Mapped[datetime | None] = mapped_column(default=None)
    # When its last heartbeat said it stopped cleanly: it then no longer counts as live
    # nor holds the watermark back, whatever batch may still arrive after.
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class StreamMessage(IdMixin, TenantMixin, Base):
    """One message of a run's live stream (SSE), kept so a client resumes without loss.

    ``seq`` is the SSE ``id:``; a reconnect with ``Last-Event-ID: n`` replays
    every message with ``seq > n`` from here, whichever process wrote it.
    """

    __tablename__ = "stream_messages"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
