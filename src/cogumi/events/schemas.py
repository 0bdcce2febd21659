"""Ingest and read shapes of events (CONTRACTS.md "Events").

Ingest input is strict: unknown fields, bad enums and over-long strings are
422s naming the field. ``schema_version`` lets the shape grow without breaking
older sidecars.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StringConstraints

from cogumi.schemas import BulkInput, Input, Output

Channel = Literal["http", "system", "policy"]
EventType = Literal[
    "request",
    "response",
    "blocked",
    "marker",
    "secret.detected",
    "policy.violation",
    "agent.message",
]
Actor = Literal["target", "adversary", "system"]
Classification = Literal[
    "attacker_sink", "internal_api", "tool", "llm_provider", "public_internet", "unknown"
]
Short = Annotated[str, StringConstraints(max_length=255)]
Long = Annotated[str, StringConstraints(max_length=2048)]

MAX_EVENTS_PER_BATCH = 1000


class DestinationIn(BulkInput):
    host: Short = ""
    path: Long = ""
    port: int | None = Field(default=None, ge=0, le=65535)
    classification: Classification = "unknown"
    sensitive_path: Short | None = Field(
        default=None, description="The project's sensitive-path pattern this path hit, if any."
    )


class HttpIn(BulkInput):
    method: Annotated[str, StringConstraints(max_length=16)] | None = None
    status_code: int | None = Field(default=None, ge=0, le=999)
    bytes_out: int | None = Field(default=None, ge=0)
    bytes_in: int | None = Field(default=None, ge=0)
    duration_ms: float | None = Field(default=None, ge=0)


class MatchIn(BulkInput):
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    preview: Annotated[str, StringConstraints(max_length=64)] = ""
    confidence: float = Field(ge=0, le=1)


class EventIn(BulkInput):
    ts: datetime
    channel: Channel
    type: EventType
    actor: Actor = "target"
    destination: DestinationIn | None = None
    http: HttpIn | None = None
    # Free-form but bounded: the server truncates it to 64 KB. Redaction happens in the
    # sidecar, before the payload leaves the customer's network; a sender other than a
    # sidecar of the server's version is scanned again on ingest (events/guard.py).
    payload_redacted: dict[str, Any] = Field(default_factory=dict)
    matches: list[MatchIn] = Field(default_factory=list, max_length=100)
    error: Long | None = Field(default=None, description="What went wrong upstream, if anything.")
    integrity_hash: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="Ignored on ingest: the server hashes the payload it actually stores.",
    )
    schema_version: int = Field(default=1, ge=1, le=1)


INSTANCE_PATTERN = r"^[A-Za-z0-9_-]*$"
InstanceId = Annotated[
    str,
    StringConstraints(max_length=64, pattern=INSTANCE_PATTERN),
    Field(
        description="A random id the sending process made when it started. Replicas that "
        "share a sidecar token each keep their own status, drop counters and watermark under "
        "it; empty for senders that have none.",
    ),
]


class IngestBatchIn(Input):
    project_id: uuid.UUID
    run_id: uuid.UUID | None = None
    sidecar_version: Annotated[str, StringConstraints(max_length=64)] = ""
    instance_id: InstanceId = ""
    batch_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    events: list[EventIn] = Field(max_length=MAX_EVENTS_PER_BATCH)
    watermark: datetime | None = Field(
        default=None,
        description="Every exchange the sidecar saw start before this instant has completed "
        "and was shipped in this batch or an earlier one. A batch may carry no events and "
        "only a fresh watermark.",
    )


class IngestResult(Output):
    ok: bool
    accepted: int
    dropped: int
    duplicate: bool = False
    run_active: bool = Field(
        default=False,
        description="A campaign of the project is running: the sidecar then refreshes its "
        "watermark every flush interval instead of once per heartbeat.",
    )
    redacted: int = Field(
        default=0,
        description="Secrets this batch carried in the clear, masked by the server before "
        "storing (only batches from a sender other than a sidecar of the server's version "
        "are scanned; 0 for a duplicate batch, which stores nothing).",
    )


class HeartbeatOut(Output):
    ok: bool
    run_active: bool


class HeartbeatIn(Input):
    sidecar_version: Annotated[str, StringConstraints(max_length=64)] = ""
    project_id: uuid.UUID | None = None
    instance_id: InstanceId = ""
    started_at: float | None = Field(default=None, ge=0)
    uptime_sec: float | None = Field(default=None, ge=0)
    state: Annotated[str, StringConstraints(max_length=32)] = ""
    # sent, queued, dropped_total, events_per_minute... and ``dropped`` by reason.
    counters: dict[str, int | float | dict[str, int]] = Field(default_factory=dict, max_length=64)


class SidecarConfigOut(Output):
    project_id: uuid.UUID
    tool_domains: list[str]
    internal_suffixes: list[str]
    sensitive_paths: list[str]
    sink_domains: list[str]


class ConnectionOut(Output):
    project_id: uuid.UUID
    connected: bool
    last_heartbeat_at: datetime | None
    last_event_at: datetime | None
    events_last_minute: int
    sidecar_version: str | None
    counters: dict[str, Any] = Field(
        description="The live sidecar processes' counters added up (dropped events by "
        "reason; `started_at` the earliest), or the last heartbeat's when none is live."
    )
    sidecars_live: int = Field(
        description="Sidecar processes of the project with a heartbeat in the last two "
        "minutes that have not reported stopping (replicas sharing a token count apart)."
    )


class EventOut(Output):
    """One stored event in the CONTRACTS.md shape."""

    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID
    run_id: uuid.UUID | None
    ts: datetime
    seq: int | None
    channel: str
    type: str
    actor: str
    destination: dict[str, Any] | None
    http: dict[str, Any] | None
    payload_redacted: dict[str, Any]
    matches: list[dict[str, Any]]
    error: str | None
    integrity_hash: str

    @classmethod
    def from_row(cls, row: Event) -> EventOut:
        has_dest = row.dest_host is not None or row.classification is not None
        has_http = row.http_method is not None or row.status_code is not None
        return cls(
            id=row.id,
            org_id=row.org_id,
            project_id=row.project_id,
            run_id=row.run_id,
            ts=row.ts,
            seq=row.seq,
            channel=row.channel,
            type=row.type,
            actor=row.actor,
            destination={
                "host": row.dest_host,
                "path": row.dest_path,
                "port": row.dest_port,
                "classification": row.classification,
                "sensitive_path": row.sensitive_path,
            }
            if has_dest
            else None,
            http={
                "method": row.http_method,
                "status_code": row.status_code,
                "bytes_out": row.bytes_out,
                "bytes_in": row.bytes_in,
                "duration_ms": row.duration_ms,
            }
            if has_http
            else None,
            payload_redacted=row.payload_redacted,
            matches=list(row.matches),
            error=row.error,
            integrity_hash=row.integrity_hash,
        )


class EventPage(Output):
    items: list[EventOut]
    next_after_seq: int | None


if TYPE_CHECKING:
    from cogumi.events.models import Event
