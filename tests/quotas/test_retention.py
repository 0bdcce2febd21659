"""Retention: exact survivors across two orgs and three retention periods, cascades,
archives, the cron hook and its secret, and a second cleanup doing no harm."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from cogumi.app import create_app
from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.events.models import Event, StreamMessage
from cogumi.events.service import integrity_hash
from cogumi.findings.models import Finding, FindingStatus
from cogumi.projects.models import Project
from cogumi.quotas import locks, retention
from cogumi.quotas.models import OrgQuota
from cogumi.quotas.service import add_storage
from cogumi.reports.bundle import verify
from cogumi.reports.models import Report
from cogumi.runs.models import Run, RunStatus, ScriptResult, Severity, StepKind, StoryStep
from cogumi.tenancy.models import AuditLog
from tests.conftest import make_settings
from tests.factories import Accounts

DAY = timedelta(days=1)


@dataclass
class Org:
    org_id: uuid.UUID
    doomed: set[uuid.UUID] = field(default_factory=set)  # runs retention must delete
    kept: set[uuid.UUID] = field(default_factory=set)
    doomed_events: int = 0
    kept_events: int = 0


@dataclass
class Seeder:
    accounts: Accounts

    async def project(self, org: Org, retention_days: int = 7) -> uuid.UUID:
        project_id = uuid.uuid4()
        async with self.accounts.sessionmaker() as session, session.begin():
            session.add(Project(id=project_id, org_id=org.org_id, name=f"ret-{project_id.hex[:8]}",
                                retention_days=retention_days))  # fmt: skip
        return project_id

    async def run(
        self, org: Org, project_id: uuid.UUID, *, age_days: float, status: RunStatus,
        events: int, doomed: bool,
    ) -> uuid.UUID:  # fmt: skip
        run_id, created = uuid.uuid4(), utcnow() - age_days * DAY
        async with self.accounts.sessionmaker() as session, session.begin():
            session.add(Run(id=run_id, org_id=org.org_id, project_id=project_id, status=status,
                            created_at=created, last_seq=events, last_stream_seq=1,
                            enqueued_at=utcnow()))  # a fresh job: no reaper re-sends it  # fmt: skip
            await session.flush()
            finding = Finding(id=uuid.uuid4(), org_id=org.org_id, run_id=run_id,
                              project_id=project_id, script_id="S1", technique_id="T1",
                              category="secret_leakage", title="Leak", severity=Severity.high,
                              status=FindingStatus.confirmed, score=100, confidence=1.0,
                              fingerprint=uuid.uuid4().hex)  # fmt: skip
            session.add_all([
                finding,
                ScriptResult(org_id=org.org_id, run_id=run_id, script_id="S1", technique_id="T1",
                             result="fail", score=100, severity=Severity.high, confidence=1.0),
                StreamMessage(org_id=org.org_id, run_id=run_id, seq=1, kind="run.status",
                              data={"status": status.value}),
                Report(org_id=org.org_id, run_id=run_id, version=1, format="md", content="# r",
                       content_hash="0" * 64, state_digest="0" * 64),
            ])  # fmt: skip
            await session.flush()
            session.add(StoryStep(org_id=org.org_id, run_id=run_id, step_kind=StepKind.confirmed,
                                  claim_title="Leak", finding_id=finding.id))  # fmt: skip
        await self.events(org, project_id, run_id=run_id, count=events, age_days=age_days)
        (org.doomed if doomed else org.kept).add(run_id)
        if doomed:
            org.doomed_events += events
        else:
            org.kept_events += events
        return run_id

    async def events(
        self, org: Org, project_id: uuid.UUID, *, run_id: uuid.UUID | None, count: int,
        age_days: float, doomed: bool | None = None,
    ) -> None:  # fmt: skip
        when = utcnow() - age_days * DAY
        rows = [
            dict(id=uuid.uuid4(), org_id=org.org_id, project_id=project_id, run_id=run_id,
                 seq=i + 1 if run_id else None, ts=when, received_at=when, channel="http",
                 type="request", actor="target", payload_redacted={"summary": f"e{i}"},
                 matches=[], integrity_hash=integrity_hash({"summary": f"e{i}"}))
            for i in range(count)
        ]  # fmt: skip
        async with self.accounts.sessionmaker() as session, session.begin():
            session.add_all([Event(**row) for row in rows])
            size = sum(len(json.dumps(r["payload_redacted"])) for r in rows)
            await add_storage(session, org_id=org.org_id, events=count, payload_bytes=size)
        if doomed is True:
            org.doomed_events += count
        elif doomed is False:
            org.kept_events += count


async def seed_world(accounts: Accounts) -> tuple[Org, Org]:
    """Two orgs; runs and loose events on both sides of 7- and 30-day cutoffs."""
    seeder = Seeder(accounts)
    a, b = Org((await accounts.signup()).org_id), Org((await accounts.signup()).org_id)
    for org in (a, b):
        week = await seeder.project(org, retention_days=7)
        month = await seeder.project(org, retention_days=30)
        busy, waiting = await seeder.project(org), await seeder.project(org)
        await seeder.run(org, week, age_days=10, status=RunStatus.completed, events=3, doomed=True)
        await seeder.run(
            org, week, age_days=9, status=RunStatus.stopped_quota, events=2, doomed=True
        )
        await seeder.run(org, week, age_days=6, status=RunStatus.failed, events=2, doomed=False)
        await seeder.run(
            org, month, age_days=10, status=RunStatus.completed, events=4, doomed=False
        )
        await seeder.run(org, month, age_days=31, status=RunStatus.canceled, events=1, doomed=True)
        # Old but still active: never touched.
        await seeder.run(org, busy, age_days=20, status=RunStatus.running, events=2, doomed=False)
        await seeder.run(org, waiting, age_days=20, status=RunStatus.queued, events=0, doomed=False)
        await seeder.events(org, week, run_id=None, count=5, age_days=8, doomed=True)
        await seeder.events(org, week, run_id=None, count=2, age_days=1, doomed=False)
        await seeder.events(org, month, run_id=None, count=3, age_days=20, doomed=False)
    return a, b


async def _count(accounts: Accounts, model: Any, *where: Any) -> int:
    async with accounts.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def assert_survivors(accounts: Accounts, org: Org) -> None:
    async with accounts.sessionmaker() as session:
        runs = set((await session.scalars(select(Run.id).where(Run.org_id == org.org_id))).all())
        quota = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == org.org_id))
    assert runs == org.kept
    assert await _count(accounts, Event, Event.org_id == org.org_id) == org.kept_events
    for model in (StoryStep, Finding, ScriptResult, Report, StreamMessage):
        remaining = await _count(accounts, model, model.org_id == org.org_id)
        assert remaining == len(org.kept), model.__name__
    assert quota is not None and quota.stored_events == org.kept_events


def expected_counts(org: Org) -> dict[str, int]:
    runs = len(org.doomed)
    return {"runs": runs, "events": org.doomed_events, "findings": runs, "reports": runs}


async def test_exact_survivors_in_two_orgs_with_audit(
    accounts: Accounts, settings: Settings
) -> None:
    a, b = await seed_world(accounts)
    result = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=settings)
    assert result.ran
    for org in (a, b):
        counts = result.as_json()["orgs"][str(org.org_id)]
        assert counts == {**expected_counts(org), "archived": 0, "archive_failed": 0}
        await assert_survivors(accounts, org)
        async with accounts.sessionmaker() as session:
            audits = (await session.scalars(select(AuditLog).where(
                AuditLog.org_id == org.org_id, AuditLog.action == "retention.deleted"))).all()  # fmt: skip
        assert [row.detail for row in audits] == [counts]
    again = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=settings)
    assert again.ran and str(a.org_id) not in again.as_json()["orgs"]
    await assert_survivors(accounts, a)


async def test_a_held_lock_makes_a_second_cleanup_do_nothing(
    accounts: Accounts, settings: Settings
) -> None:
    a, _ = await seed_world(accounts)
    assert await locks.acquire(accounts.sessionmaker, name=retention.LOCK_NAME, holder="other",
                               ttl_sec=60)  # fmt: skip
    try:
        skipped = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=settings)
        assert not skipped.ran and skipped.orgs == {}
        assert await _count(accounts, Run, Run.org_id == a.org_id) == len(a.doomed | a.kept)
    finally:
        await locks.release(accounts.sessionmaker, name=retention.LOCK_NAME, holder="other")
    both = await asyncio.gather(
        retention.cleanup(sessionmaker=accounts.sessionmaker, settings=settings),
        retention.cleanup(sessionmaker=accounts.sessionmaker, settings=settings),
    )
    assert any(r.ran for r in both)
    deleted = [r.as_json()["orgs"].get(str(a.org_id)) for r in both]
    assert [d for d in deleted if d] == [{**expected_counts(a), "archived": 0, "archive_failed": 0}]
    await assert_survivors(accounts, a)


async def test_archive_first_then_delete(
    accounts: Accounts, settings: Settings, tmp_path: Path
) -> None:
    a, _ = await seed_world(accounts)
    archiving = settings.model_copy(update={"retention_archive_dir": tmp_path / "archive"})
    result = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=archiving)
    assert result.as_json()["orgs"][str(a.org_id)]["archived"] == len(a.doomed)
    files = {p.stem: p for p in (tmp_path / "archive" / str(a.org_id)).glob("*/*.json")}
    assert set(files) == {str(r) for r in a.doomed}
    for run_id, path in files.items():
        bundle = json.loads(path.read_text())
        assert verify(bundle).ok
        assert bundle["run"]["id"] == run_id
        assert len(bundle["findings"]) == 1 and len(bundle["story_steps"]) == 1
        assert len(bundle["events"]) >= 1
    assert not list((tmp_path / "archive").rglob("*.tmp"))
    await assert_survivors(accounts, a)


async def test_a_run_that_cannot_be_archived_is_kept(
    accounts: Accounts, settings: Settings, tmp_path: Path
) -> None:
    a, _ = await seed_world(accounts)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("x")
    archiving = settings.model_copy(update={"retention_archive_dir": blocked})
    result = await retention.cleanup(sessionmaker=accounts.sessionmaker, settings=archiving)
    counts = result.as_json()["orgs"][str(a.org_id)]
    assert counts["runs"] == 0 and counts["archived"] == 0
    assert counts["archive_failed"] == len(a.doomed)
    reported = [p for p in result.problems if any(str(r) in p for r in a.doomed)]
    assert len(reported) == len(a.doomed)
    assert all("archive failed" in p and str(blocked) in p for p in reported)
    assert await _count(accounts, Run, Run.org_id == a.org_id) == len(a.doomed | a.kept)


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def cron_app(database_url: str, tmp_path: Path) -> AppFactory:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(make_settings(database_url, tmp_path, **overrides))
        async with application.router.lifespan_context(application):
            yield application

    return factory


async def test_cron_cleanup_needs_the_secret(accounts: Accounts, cron_app: AppFactory) -> None:
    a, b = await seed_world(accounts)
    async with cron_app(cron_secret="cron-s3cret-value") as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for headers in ({}, {"X-Cron-Secret": "wrong"}, {"X-Cron-Secret": "cron-s3cret-valu"}):
                refused = await client.post("/api/cron/cleanup", headers=headers)
                assert refused.status_code == 401, refused.text
                assert refused.json()["error"] == "unauthenticated"
            assert await _count(accounts, Run, Run.org_id == a.org_id) == len(a.doomed | a.kept)
            response = await client.post(
                "/api/cron/cleanup", headers={"X-Cron-Secret": "cron-s3cret-value"}
            )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ran"] is True
    for org in (a, b):
        assert body["orgs"][str(org.org_id)] == {
            **expected_counts(org),
            "archived": 0,
            "archive_failed": 0,
        }
        await assert_survivors(accounts, org)
    assert body["totals"]["runs"] >= len(a.doomed) + len(b.doomed)


async def test_cron_cleanup_is_off_without_a_secret(cron_app: AppFactory) -> None:
    async with cron_app() as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/api/cron/cleanup", headers={"X-Cron-Secret": "x"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
