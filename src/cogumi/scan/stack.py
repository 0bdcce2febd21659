"""The product on loopback inside one process: API + worker (+ sidecar), for scan and demo.

The API is the real app (``create_app``) served by uvicorn on an ephemeral
loopback port, so an in-process sidecar ships to it exactly as a customer's
sidecar ships to ``cogumi serve``, and the embedded run worker executes the
campaign in this process. Everything is created through the services, so
guardrails, config snapshots and audit rows apply as they do on a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.db.engine import transaction
from cogumi.db.migrate import upgrade
from cogumi.errors import InvalidInput
from cogumi.events.bus import LiveBus
from cogumi.events.service import watermark_for_project
from cogumi.findings import service as findings_service
from cogumi.findings.schemas import FindingOut
from cogumi.projects import service as projects_service
from cogumi.projects.models import Project
from cogumi.projects.schemas import ProjectCreate
from cogumi.runs import service as runs_service
from cogumi.runs.models import TERMINAL_STATUSES, Run
from cogumi.runs.queue import RunQueue
from cogumi.runs.schemas import RunCreate, RunOut, ScriptResultOut
from cogumi.scan.report import ScanResult
from cogumi.sidecar.options import DEFAULT_SINK, SidecarOptions
from cogumi.sidecar.runner import Sidecar
from cogumi.tasks import spawn
from cogumi.tenancy import service as tenancy_service
from cogumi.tenancy.deps import Member, Principal
from cogumi.tenancy.models import Role

log = logging.getLogger(__name__)

POLL_SEC = 0.3
SIDECAR_READY_SEC = 10.0


def bind_loopback(address: str = "127.0.0.1:0") -> socket.socket:
    """A listening socket (port 0 = any free port), bound before the URL is printed."""
    host, _, port = address.rpartition(":")
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (see demo_agent).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host or "127.0.0.1", int(port)))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def embedded_settings(data_dir: Path, *, port: int) -> Settings:
    """Settings of an embedded store in ``data_dir``, whatever the environment says about
    databases or Redis: a local scan must never write into a shared deployment."""
    return Settings(
        mode="embedded",
        data_dir=data_dir,
        database_url=None,
        redis_url=None,
        host="127.0.0.1",
        port=port,
        public_url=None,
        allow_private_targets=True,
        secret_key=SecretStr(secrets.token_urlsafe(48)),
        log_level="WARNING",
    )


def migrate(settings: Settings) -> None:
    """Create or upgrade the embedded store (call outside the event loop)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)


class _Server(uvicorn.Server):
    """Signals belong to the command that embeds the server, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class LocalApi:
    """The running app and handles to its state."""

    app: FastAPI
    settings: Settings
    base_url: str

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        maker: async_sessionmaker[AsyncSession] = self.app.state.sessionmaker
        return maker

    @property
    def queue(self) -> RunQueue:
        queue: RunQueue = self.app.state.run_queue
        return queue

    @property
    def bus(self) -> LiveBus:
        bus: LiveBus = self.app.state.live_bus
        return bus


@contextlib.asynccontextmanager
async def local_api(settings: Settings, sock: socket.socket) -> AsyncIterator[LocalApi]:
    """Serve the app on ``sock`` (lifespan on: engine, bus, queue, worker) until exit."""
    from cogumi.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = _Server(config)
    task = spawn(server.serve([sock]), name="local-api")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the embedded API stopped while starting")
        await asyncio.sleep(0.02)
    try:
        yield LocalApi(app=app, settings=settings, base_url=settings.base_url)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task


@dataclass
class Workspace:
    """The internal org, its owner acting as a member, and the project under test."""

    member: Member
    project_id: uuid.UUID
    sidecar_token: str = field(repr=False)
    email: str = ""


def owner_member(user: Any, org_id: uuid.UUID) -> Member:
    principal = Principal(user=user, org_id=org_id, role=Role.OWNER)
    return Member(principal=principal, org_id=org_id, role=Role.OWNER)


async def create_workspace(
    api: LocalApi,
    *,
    project: ProjectCreate,
    email: str,
    password: str | None = None,
    org_name: str = "cogumi scan",
    custom_document: dict[str, Any] | None = None,
) -> Workspace:
    """User + org (OWNER) + project + sidecar token (+ custom scripts), in one transaction."""
    from cogumi.engine import custom

    async with transaction(api.sessionmaker) as session:
        user, org = await tenancy_service.register(
            session, email=email, password=password, display_name=org_name, org_name=org_name
        )
        member = owner_member(user, org.id)
        row = await projects_service.create_project(
            session=session, member=member, data=project, settings=api.settings
        )
        if custom_document is not None:
            await custom.save(session, member=member, name="scan", document=custom_document)
        _, token = await projects_service.create_sidecar_token(
            session=session, member=member, project=row, name=org_name
        )
    return Workspace(member=member, project_id=row.id, sidecar_token=token, email=email)


def sidecar_options(
    api: LocalApi, workspace: Workspace, listen: str, **lists: Any
) -> SidecarOptions:
    """A sidecar that ships quickly (short flush and heartbeat) so evidence windows close fast."""
    return SidecarOptions(
        listen=listen, ingest_url=api.base_url, token=workspace.sidecar_token,
        project_id=str(workspace.project_id), heartbeat_interval=1.0, batch_flush_ms=50,
        shutdown_timeout=3.0, log_level="warning",
        sink_domains=tuple(lists.get("sink_domains") or (DEFAULT_SINK,)),
        tool_domains=tuple(lists.get("tool_domains") or ()),
        internal_suffixes=tuple(lists.get("internal_suffixes") or ()),
        sensitive_paths=tuple(lists.get("sensitive_paths") or ()),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running_sidecar(
    api: LocalApi, workspace: Workspace, options: SidecarOptions
) -> AsyncIterator[Sidecar]:
    """Start the sidecar and wait until its watermark reaches the store, so the first
    campaign step already has complete evidence windows."""
    sidecar = Sidecar(options)
    await sidecar.start()
    try:
        await _wait_for_watermark(api, workspace.project_id)
        yield sidecar
    finally:
        await sidecar.stop()


async def _wait_for_watermark(api: LocalApi, project_id: uuid.UUID) -> None:
    deadline = asyncio.get_running_loop().time() + SIDECAR_READY_SEC
    while asyncio.get_running_loop().time() < deadline:
        async with api.sessionmaker() as session:
            if await watermark_for_project(session, project_id=project_id) is not None:
                return
        await asyncio.sleep(0.1)
    log.warning("the sidecar sent no watermark yet; early evidence windows may be incomplete")


async def start_run(
    api: LocalApi,
    workspace: Workspace,
    *,
    scripts: list[str],
    intensity: str,
    custom_ids: frozenset[str] = frozenset(),
) -> uuid.UUID:
    """Queue the campaign through ``runs.service`` (guardrails, snapshot, audit, queue)."""
    async with transaction(api.sessionmaker) as session:
        project = await projects_service.get_project(
            session=session, org_id=workspace.member.org_id, project_id=workspace.project_id
        )
        run = await _create_run(session, api, workspace, project, scripts, intensity, custom_ids)
    return run.id


async def _create_run(
    session: AsyncSession, api: LocalApi, workspace: Workspace, project: Project,
    scripts: list[str], intensity: str, custom_ids: frozenset[str],
) -> Run:  # fmt: skip
    async def create(ids: list[str]) -> Run:
        body = RunCreate.model_validate({"scripts": ids, "intensity": intensity})
        run, _warning = await runs_service.create_run(
            session=session, member=workspace.member, project=project, body=body,
            settings=api.settings, queue=api.queue, bus=api.bus,
        )  # fmt: skip
        return run

    try:
        return await create(scripts)
    except InvalidInput as exc:
        if not custom_ids or _field_of(exc) != "scripts":
            raise
    # The run service checks script ids against the built-in library only. Custom
    # ids were already validated against this org's library (built-ins + the
    # saved custom document), so start with the built-ins and put the full list
    # into the snapshot before the transaction commits (and the job is sent).
    run = await create([s for s in scripts if s not in custom_ids] or ["S1"])
    run.config = {**run.config, "scripts": list(scripts)}
    await session.flush()
    return run


def _field_of(exc: InvalidInput) -> str | None:
    fields = exc.fields.get("fields") or [{}]
    return fields[0].get("field") if isinstance(fields[0], dict) else None


async def wait_for_run(
    api: LocalApi,
    workspace: Workspace,
    run_id: uuid.UUID,
    on_status: Callable[[str], None],
    on_result: Callable[[dict[str, Any]], None],
) -> None:
    """Poll the store until the run ends, reporting status changes and script verdicts."""
    seen: set[str] = set()
    while True:
        async with api.sessionmaker() as session:
            run = await runs_service.get_run(
                session=session, org_id=workspace.member.org_id, run_id=run_id
            )
            rows = await runs_service.list_results(session=session, run=run)
        for row in rows:
            if str(row.id) not in seen:
                seen.add(str(row.id))
                on_result(ScriptResultOut.model_validate(row).model_dump(mode="json"))
        on_status(run.status.value)
        if run.status in TERMINAL_STATUSES:
            return
        await asyncio.sleep(POLL_SEC)


async def collect(api: LocalApi, workspace: Workspace, run_id: uuid.UUID) -> ScanResult:
    """The run, its script results and its findings, read through the services."""
    async with api.sessionmaker() as session:
        run = await runs_service.get_run(
            session=session, org_id=workspace.member.org_id, run_id=run_id
        )
        results = await runs_service.list_results(session=session, run=run)
        findings = await findings_service.list_findings(session=session, run=run)
    return ScanResult(
        run=RunOut.model_validate(run).model_dump(mode="json"),
        results=[ScriptResultOut.model_validate(r).model_dump(mode="json") for r in results],
        findings=[FindingOut.from_row(f).model_dump(mode="json") for f in findings],
    )
