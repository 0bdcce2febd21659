"""Helpers shared by the runs tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.db.base import utcnow
from cogumi.projects.models import Project
from cogumi.runs.models import Run, RunStatus

FINAL = {"completed", "failed", "canceled", "stopped_quota"}


async def make_project(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"runs-{uuid.uuid4().hex[:8]}", **fields}
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def start(client: httpx.AsyncClient, project_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/api/projects/{project_id}/runs", json=body or None)


async def wait_status(
    client: httpx.AsyncClient, run_id: str, statuses: set[str], timeout: float = 15.0
) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        if data["status"] in statuses:
            return data
        assert time.monotonic() < deadline, f"run stuck in {data['status']}: {data}"
        await asyncio.sleep(0.05)


async def insert_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: uuid.UUID,
    *,
    project_id: uuid.UUID | None = None,
    **values: Any,
) -> Run:
    """A run row written directly (for states the API never leaves a run in for long)."""
    async with sessionmaker() as session, session.begin():
        if project_id is None:
            project = Project(id=uuid.uuid4(), org_id=org_id, name=f"raw-{uuid.uuid4().hex[:8]}")
            session.add(project)
            await session.flush()
            project_id = project.id
        values.setdefault("status", RunStatus.queued)
        values.setdefault("enqueued_at", utcnow())
        run = Run(id=uuid.uuid4(), org_id=org_id, project_id=project_id, **values)
        session.add(run)
    return run


def ago(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)
