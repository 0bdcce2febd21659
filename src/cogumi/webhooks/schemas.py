"""Request and response shapes of the webhooks API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictBool, StringConstraints, field_validator

from cogumi.runs.models import Severity
from cogumi.schemas import Input, Name, Output
from cogumi.webhooks.models import DeliveryStatus, EventType, PayloadFormat

Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
EVENTS_HELP = "Events to send: run.completed, run.failed, finding.created."
SEVERITY_HELP = "finding.created is sent only for findings at least this severe."
FORMAT_HELP = "json: the signed event document; slack: {text} for a Slack incoming webhook."


def _unique(events: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(events))


class WebhookIn(Input):
    name: Name
    url: Url = Field(description="http(s) URL; checked by the outbound-URL guard.")
    events: list[EventType] = Field(min_length=1, max_length=3, description=EVENTS_HELP)
    min_severity: Severity = Field(default=Severity.info, description=SEVERITY_HELP)
    format: PayloadFormat = Field(default=PayloadFormat.json, description=FORMAT_HELP)
    enabled: StrictBool = True

    _dedupe = field_validator("events")(_unique)


class WebhookPatch(Input):
    name: Name | None = None
    url: Url | None = None
    events: list[EventType] | None = Field(
        default=None, min_length=1, max_length=3, description=EVENTS_HELP
    )
    min_severity: Severity | None = Field(default=None, description=SEVERITY_HELP)
    format: PayloadFormat | None = Field(default=None, description=FORMAT_HELP)
    enabled: StrictBool | None = None
    rotate_secret: StrictBool = Field(
        default=False, description="Replace the signing secret; the new one is shown once."
    )

    @field_validator("events")
    @classmethod
    def _dedupe(cls, events: list[EventType] | None) -> list[EventType] | None:
        return None if events is None else _unique(events)

    def changes(self) -> dict[str, Any]:
        """Fields the caller set (``rotate_secret`` aside); null is refused for each."""
        fields = self.model_fields_set - {"rotate_secret"}
        data = {name: getattr(self, name) for name in fields}
        for name, value in data.items():
            if value is None:
                raise ValueError(name)
        return data


class WebhookOut(Output):
    id: uuid.UUID
    name: str
    url: str
    events: list[str]
    min_severity: str
    format: PayloadFormat
    enabled: bool
    secret_prefix: str = Field(description="Start of the signing secret, to tell secrets apart.")
    created_at: datetime
    updated_at: datetime


class WebhookWithSecretOut(WebhookOut):
    secret: str = Field(description="Signing secret: shown only now; store it with the receiver.")


class DeliveryOut(Output):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    status: DeliveryStatus
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[dict[str, Any]]
    created_at: datetime


class DeliveryList(Output):
    items: list[DeliveryOut]
