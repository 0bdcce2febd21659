"""Tables: ``webhooks`` (an org's endpoints) and ``webhook_deliveries`` (the outbox and log).

A delivery row is written in the same transaction as the change it reports
(a run ending, a finding stored), so an event is delivered exactly when the
change exists; the dispatcher sends it after commit and keeps its attempts.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, TimestampMixin, utcnow


class EventType(enum.StrEnum):
    run_completed = "run.completed"
    run_failed = "run.failed"
    finding_created = "finding.created"


class PayloadFormat(enum.StrEnum):
    json = "json"
    slack = "slack"


class DeliveryStatus(enum.StrEnum):
    pending = "pending"  # waiting for its next attempt
    sending = "sending"  # claimed by a dispatcher (lease in ``lease_until``)
    delivered = "delivered"
    failed = "failed"  # every attempt used, or the endpoint is gone


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    return Enum(kind, name=name, native_enum=False, length=24, values_callable=_values)


def _values(kind: type[enum.StrEnum]) -> list[str]:
    return [member.value for member in kind]


class Webhook(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "webhooks"

    name: Mapped[str] = mapped_column(String(120))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(default=list)
    min_severity: Mapped[str] = mapped_column(String(16), default="info")
    format: Mapped[PayloadFormat] = mapped_column(
        _enum(PayloadFormat, "webhook_format"), default=PayloadFormat.json
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Fernet token of the signing secret (key derived from the deployment's
    # secret key); only ``secret_prefix`` is ever shown after creation.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(IdMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_hook_created", "webhook_id", "created_at"),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column()
    event_type: Mapped[EventType] = mapped_column(_enum(EventType, "webhook_event"))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The retry policy in force when the event happened, kept with the row so a
    # delivery is retried the same way whichever process picks it up.
    max_attempts: Mapped[int] = mapped_column(Integer, default=6)
    backoff_sec: Mapped[float] = mapped_column(Float, default=30.0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    # One entry per attempt: {n, at, status_code, error, duration_ms}.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
