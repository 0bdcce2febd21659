"""Runs API: start a campaign, read runs, cancel, and a run's story and results.

Starting and cancelling need ``runs.start`` (MEMBER and up); reads any member.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, status

from cogumi.events.bus import LiveBus
from cogumi.projects import service as projects_service
from cogumi.runs import service
from cogumi.runs.queue import RunQueue
from cogumi.runs.schemas import (
    RunCreate,
    RunCreated,
    RunOut,
    RunPage,
    ScriptResultList,
    ScriptResultOut,
    StoryStepList,
    StoryStepOut,
)
from cogumi.tenancy.deps import AppSettings, DbSession, Reader, RunStarter

router = APIRouter(tags=["runs"])


def _queue(request: Request) -> RunQueue:
    queue: RunQueue = request.app.state.run_queue
    return queue


def _bus(request: Request) -> LiveBus:
    bus: LiveBus = request.app.state.live_bus
    return bus


Queue = Annotated[RunQueue, Depends(_queue)]
Bus = Annotated[LiveBus, Depends(_bus)]


@router.post(
    "/projects/{project_id}/runs",
    status_code=status.HTTP_201_CREATED,
    response_model=RunCreated,
    responses={
        403: {"description": "Prod project without the prod override."},
        409: {"description": "The project already has a queued or running run."},
    },
)
async def start_run(
    project_id: uuid.UUID,
    member: RunStarter,
    session: DbSession,
    settings: AppSettings,
    queue: Queue,
    bus: Bus,
    body: Annotated[RunCreate | None, Body()] = None,
) -> RunCreated:
    """Queue a campaign against the project; omitted fields use the project's red-team config.

    One campaign per project at a time (409 names the active run). Staging and
    overridden prod projects answer with a ``warning``.
    """
    project = await projects_service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    run, warning = await service.create_run(
        session=session,
        member=member,
        project=project,
        body=body or RunCreate(),
        settings=settings,
        queue=queue,
        bus=bus,
    )
    return RunCreated(**RunOut.model_validate(run).model_dump(), warning=warning)


@router.get("/projects/{project_id}/runs", response_model=RunPage)
async def list_runs(
    project_id: uuid.UUID,
    member: Reader,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=200, description="Runs per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
) -> RunPage:
    """The project's runs, newest first; page with ``next_cursor``."""
    project = await projects_service.get_project(
        session=session, org_id=member.org_id, project_id=project_id
    )
    rows, next_cursor = await service.list_runs(
        session=session, project=project, limit=limit, cursor=cursor
    )
    return RunPage(items=[RunOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(run_id: uuid.UUID, member: Reader, session: DbSession) -> RunOut:
    run = await service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    return RunOut.model_validate(run)


@router.post("/runs/{run_id}/cancel", response_model=RunOut)
async def cancel_run(run_id: uuid.UUID, member: RunStarter, session: DbSession, bus: Bus) -> RunOut:
    """Cancel: a queued run ends now; a running one stops after its current step."""
    run = await service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    run = await service.cancel_run(session=session, member=member, run=run, bus=bus)
    return RunOut.model_validate(run)


@router.get("/runs/{run_id}/story", response_model=StoryStepList)
async def run_story(run_id: uuid.UUID, member: Reader, session: DbSession) -> StoryStepList:
    """The claim-first exploit feed, in order."""
    run = await service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    steps = await service.list_story(session=session, run=run)
    return StoryStepList(items=[StoryStepOut.model_validate(s) for s in steps])


@router.get("/runs/{run_id}/results", response_model=ScriptResultList)
async def run_results(run_id: uuid.UUID, member: Reader, session: DbSession) -> ScriptResultList:
    """One verdict per script: pass | fail | blocked | inconclusive."""
    run = await service.get_run(session=session, org_id=member.org_id, run_id=run_id)
    rows = await service.list_results(session=session, run=run)
    return ScriptResultList(items=[ScriptResultOut.model_validate(r) for r in rows])
