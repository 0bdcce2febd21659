"""A receiver on loopback, an app with fast retries, and runs/findings to report."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from cogumi.app import create_app
from cogumi.db.engine import transaction
from cogumi.findings import service as findings_service
from cogumi.projects.models import Project
from cogumi.runs import service as runs_service
from cogumi.runs.models import Run, RunStatus, Severity
from tests.conftest import make_settings
from tests.factories import Accounts
from tests.servers import serve_app


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server that records what it is sent and answers scripted codes."""

    url: str = ""
    codes: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def hook(path: str, request: Request) -> Response:
            self.got.append(Received("/" + path, dict(request.headers), await request.body()))
            code = self.codes.pop(0) if self.codes else 204
            headers = {"Location": f"{self.url}/redirected"} if 300 <= code < 400 else {}
            return Response(status_code=code, headers=headers)

        return app

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                await asyncio.sleep(0.02)
        return self.got


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()
    async with serve_app(box.app()) as url:
        box.url = url
        yield box


@pytest.fixture
async def fast_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app whose deliveries retry after 0.05 s, 0.1 s (three attempts in all)."""
    settings = make_settings(
        database_url, tmp_path, webhook_max_attempts=3, webhook_retry_base_sec=0.05
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def fast_accounts(fast_app: FastAPI) -> AsyncIterator[Accounts]:
    factory = Accounts(app=fast_app, sessionmaker=fast_app.state.sessionmaker)
    try:
        yield factory
    finally:
        await factory.close()


def hook_body(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "alerts", "url": url, "events": ["run.completed", "run.failed",
            "finding.created"], **extra}  # fmt: skip


async def new_run(app: FastAPI, org_id: uuid.UUID, *, name: str = "checkout-bot") -> Run:
    """A project and a running run of ``org_id``, inserted directly."""
    project = Project(id=uuid.uuid4(), org_id=org_id, name=f"{name}-{uuid.uuid4().hex[:6]}")
    run = Run(id=uuid.uuid4(), org_id=org_id, project_id=project.id, status=RunStatus.running)
    async with transaction(app.state.sessionmaker) as session:
        session.add(project)
        await session.flush()
        session.add(run)
    return run


async def finish(app: FastAPI, run: Run, status: RunStatus, **kwargs: Any) -> None:
    """End ``run`` through the runs service, in one committed transaction."""
    async with transaction(app.state.sessionmaker) as session:
        row = await session.get(Run, run.id)
        assert row is not None
        await runs_service.finish_run(
            session, bus=app.state.live_bus, run=row, status=status, **kwargs
        )


async def add_finding(
    app: FastAPI, run: Run, *, severity: Severity, title: str = "API key in reply"
) -> uuid.UUID:
    """A finding through the findings service (its own technique, so fingerprints differ)."""
    async with transaction(app.state.sessionmaker) as session:
        row = await session.get(Run, run.id)
        assert row is not None
        finding = await findings_service.record_finding(
            session, bus=app.state.live_bus, run=row, script_id="S1",
            technique_id=f"T-{uuid.uuid4().hex[:8]}", category="secret_leakage", title=title,
            severity=severity, status="confirmed", score=100, confidence=1.0,
            summary="The agent printed a key.",
        )  # fmt: skip
        return finding.id


async def wait_final(
    client: httpx.AsyncClient, hook_id: str, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The delivery log once ``count`` deliveries are delivered or failed."""
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(f"/api/webhooks/{hook_id}/deliveries")
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            done = [i for i in items if i["status"] in ("delivered", "failed")]
            if len(done) >= count:
                return items
            await asyncio.sleep(0.05)
