"""Sidecar-facing ingest API and the wizard's connection status.

Sidecar routes authenticate with ``X-Sidecar-Token`` only (never a cookie or
an API key): the token names its org and project.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header

from cogumi.events import service
from cogumi.events.schemas import (
    ConnectionOut,
    HeartbeatIn,
    IngestBatchIn,
    IngestResult,
    SidecarConfigOut,
)
from cogumi.projects import service as projects_service
from cogumi.projects.models import Project, SidecarToken
from cogumi.tenancy.deps import DbSession, Reader

router = APIRouter(tags=["ingest"])


async def sidecar_token(
    session: DbSession,
    x_sidecar_token: Annotated[
        str | None, Header(description="The project's sidecar token.")
    ] = None,
) -> SidecarToken:
    """401 without a token or with an unknown one, 403 when revoked."""
    from cogumi.errors import Unauthenticated

    if not x_sidecar_token:
        raise Unauthenticated("send the sidecar token in the X-Sidecar-Token header")
    return await projects_service.authenticate_sidecar_token(session, x_sidecar_token)


SidecarAuth = Annotated[SidecarToken, Depends(sidecar_token)]


@router.post("/ingest/events", response_model=IngestResult)
async def ingest_events(
    body: IngestBatchIn, token: SidecarAuth, session: DbSession
) -> IngestResult:
    """Store a batch of sidecar events. A repeated ``batch_id`` stores nothing twice."""
    return await service.ingest_batch(session, token=token, batch=body)


@router.post("/projects/{project_id}/sidecar/heartbeat", status_code=204)
async def heartbeat(
    project_id: uuid.UUID, body: HeartbeatIn, token: SidecarAuth, session: DbSession
) -> None:
    """Record the sidecar's version and counters (sent, dropped, queued...)."""
    await service.record_heartbeat(session, token=token, project_id=project_id, heartbeat=body)


@router.get("/sidecar/config", response_model=SidecarConfigOut)
async def sidecar_config(token: SidecarAuth, session: DbSession) -> SidecarConfigOut:
    """The project's destination rules, fetched by the sidecar at start and periodically."""
    project = await session.get(Project, token.project_id)
    assert project is not None  # the token row cascades with its project
    return SidecarConfigOut(
        project_id=project.id,
        tool_domains=list(project.tool_domains),
        internal_suffixes=list(project.internal_suffixes),
        sensitive_paths=list(project.sensitive_paths),
        sink_domains=list(project.sink_domains),
    )


@router.get("/projects/{project_id}/connection", response_model=ConnectionOut)
async def connection(project_id: uuid.UUID, member: Reader, session: DbSession) -> ConnectionOut:
    """Is a sidecar connected? Last heartbeat, last event, events in the last minute."""
    project = await projects_service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    return ConnectionOut(**await service.connection_state(session, project=project))
