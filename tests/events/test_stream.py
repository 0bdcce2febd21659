"""SSE over a real socket: live delivery, resume with Last-Event-ID, end of run, scoping."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update

from cogumi.db.engine import transaction
from cogumi.events import stream
from cogumi.runs.models import Run, RunStatus
from tests.factories import Accounts, project_with_token
from tests.servers import serve_app


async def make_run(accounts: Accounts, org_id: uuid.UUID) -> uuid.UUID:
    sidecar = await project_with_token(accounts, org_id)
    run_id = uuid.uuid4()
    async with transaction(accounts.sessionmaker) as session:
        session.add(
            Run(
                id=run_id,
                org_id=org_id,
                project_id=sidecar.project_id,
                status=RunStatus.running,
                started_at=datetime.now(UTC),
            )
        )
    return run_id


async def publish(
    app: Any, org_id: uuid.UUID, run_id: uuid.UUID, kind: str, data: dict[str, Any]
) -> None:
    async with transaction(app.state.sessionmaker) as session:
        await stream.publish(
            session, bus=app.state.live_bus, org_id=org_id, run_id=run_id, kind=kind, data=data
        )  # type: ignore[arg-type]


async def sse_items(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse SSE frames (id/event/data), skipping keep-alive comments."""
    item: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if item:
                yield item
            item = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            item[key] = value.removeprefix(" ")


async def take(items: AsyncIterator[dict[str, str]], n: int) -> list[dict[str, str]]:
    out = []
    async with asyncio.timeout(10):
        async for item in items:
            out.append(item)
            if len(out) == n:
                break
    return out


async def test_live_delivery_resume_and_end(app: Any, accounts: Accounts) -> None:
    owner = await accounts.signup()
    run_id = await make_run(accounts, owner.org_id)
    for i in range(3):
        await publish(app, owner.org_id, run_id, "story.step.created", {"n": i})
    cookies = dict(owner.client.cookies)
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, cookies=cookies) as http:
        async with http.stream("GET", f"/api/runs/{run_id}/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            items = sse_items(response)
            backlog = await take(items, 3)
            assert [i["id"] for i in backlog] == ["1", "2", "3"]
            assert [json.loads(i["data"])["n"] for i in backlog] == [0, 1, 2]
            await publish(app, owner.org_id, run_id, "finding.created", {"title": "leak"})
            (live,) = await take(items, 1)
            assert live == {"id": "4", "event": "finding.created", "data": '{"title": "leak"}'}
        # Disconnected: two messages happen while nobody listens.
        await publish(app, owner.org_id, run_id, "quota.warning", {"pct": 80})
        await publish(app, owner.org_id, run_id, "story.step.created", {"n": 9})
        headers = {"Last-Event-ID": "4"}
        async with http.stream("GET", f"/api/runs/{run_id}/stream", headers=headers) as response:
            items = sse_items(response)
            missed = await take(items, 2)
            assert [(i["id"], i["event"]) for i in missed] == [
                ("5", "quota.warning"),
                ("6", "story.step.created"),
            ]
            async with transaction(app.state.sessionmaker) as session:
                await session.execute(
                    update(Run).where(Run.id == run_id).values(status=RunStatus.completed)
                )
                await stream.publish(
                    session,
                    bus=app.state.live_bus,
                    org_id=owner.org_id,
                    run_id=run_id,
                    kind="run.status",
                    data={"status": "completed"},
                )
            rest = [i async for i in items]  # the stream ends by itself once the run is over
            assert [(i["id"], i["event"]) for i in rest] == [("7", "run.status")]


async def test_stream_and_events_are_org_scoped(app: Any, accounts: Accounts) -> None:
    owner = await accounts.signup()
    stranger = await accounts.signup()
    run_id = await make_run(accounts, owner.org_id)
    assert (await stranger.client.get(f"/api/runs/{run_id}/stream")).status_code == 404
    assert (await stranger.client.get(f"/api/runs/{run_id}/events")).status_code == 404
    assert (await owner.client.get(f"/api/runs/{uuid.uuid4()}/events")).status_code == 404
