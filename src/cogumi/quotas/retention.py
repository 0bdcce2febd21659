"""Retention: delete runs and events older than each project's ``retention_days``.

- Only ended runs are deleted (never a queued or running one); a run goes
  with everything that hangs off it (events, story steps, results, findings,
  reports, stream messages) through the database's ``ON DELETE CASCADE``.
- Events that belong to no run are deleted by their arrival time.
- With an archive configured (``retention_archive_dir`` and/or an S3 bucket,
  see :mod:`cogumi.quotas.archive`), each run is first written to every store
  as its evidence bundle and deleted only after all of them hold it; a run
  whose archive fails is kept, counted as ``archive_failed`` and its reason
  listed in ``problems`` (tried again at the next pass).
- One cleanup at a time across every process (a ``job_locks`` row); a second
  one started meanwhile returns at once and deletes nothing. Deleting is
  idempotent, so running twice is harmless.
- Work is done in small transactions (a batch of runs each), so SQLite's
  write lock is never held for long; the storage estimate moves with each
  batch and one ``retention.deleted`` audit row per org sums it up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.events.models import Event, IngestBatch
from cogumi.findings.models import Finding
from cogumi.projects.models import Project
from cogumi.quotas import archive, locks, storage
from cogumi.reports.models import Report
from cogumi.runs.models import TERMINAL_STATUSES, Run
from cogumi.tenancy.audit import Action, record

log = logging.getLogger(__name__)

LOCK_NAME = "retention"
LOCK_TTL_SEC = 600.0
BATCH = 100
MAX_PROBLEMS = 50


@dataclass
class OrgCounts:
    runs: int = 0
    events: int = 0
    findings: int = 0
    reports: int = 0
    archived: int = 0
    archive_failed: int = 0

    def add(self, other: OrgCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def empty(self) -> bool:
        return not any(asdict(self).values())


@dataclass
class CleanupResult:
    ran: bool
    orgs: dict[uuid.UUID, OrgCounts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # why runs were kept (archive failures)

    def as_json(self) -> dict[str, Any]:
        totals = OrgCounts()
        for counts in self.orgs.values():
            totals.add(counts)
        return {
            "ran": self.ran,
            "orgs": {str(org): asdict(c) for org, c in self.orgs.items()},
            "totals": asdict(totals),
            "problems": self.problems[:MAX_PROBLEMS],
        }


@dataclass
class Cleanup:
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    now: datetime
    holder: str
    stores: list[archive.ArchiveStore] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def run(self) -> CleanupResult:
        result = CleanupResult(ran=True, problems=self.problems)
        by_org: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = defaultdict(list)
        for project_id, org_id, days in await self._projects():
            by_org[org_id].append((project_id, days))
        for org_id, projects in by_org.items():
            counts = OrgCounts()
            for project_id, days in projects:
                cutoff = self.now - timedelta(days=days)
                counts.add(await self._project(org_id, project_id, cutoff))
                await locks.renew(self.sessionmaker, name=LOCK_NAME, holder=self.holder,
                                  ttl_sec=LOCK_TTL_SEC)  # fmt: skip
            if not counts.empty:
                await self._audit(org_id, counts)
                result.orgs[org_id] = counts
        return result

    async def _projects(self) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
        async with self.sessionmaker() as session:
            rows = await session.execute(select(Project.id, Project.org_id, Project.retention_days))
            return [(r.id, r.org_id, max(1, int(r.retention_days))) for r in rows]

    async def _project(
        self, org_id: uuid.UUID, project_id: uuid.UUID, cutoff: datetime
    ) -> OrgCounts:
        counts = OrgCounts()
        skipped: set[uuid.UUID] = set()
        while True:
            ids = await self._old_runs(project_id, cutoff, skipped)
            if not ids:
                break
            if self.stores:
                archived = await self._archive(ids)
                skipped.update(set(ids) - set(archived))
                counts.archived += len(archived)
                counts.archive_failed += len(ids) - len(archived)
                ids = archived
            if ids:
                counts.add(await self._delete_runs(org_id, ids))
        counts.add(await self._delete_loose_events(org_id, project_id, cutoff))
        return counts

    async def _old_runs(
        self, project_id: uuid.UUID, cutoff: datetime, skipped: set[uuid.UUID]
    ) -> list[uuid.UUID]:
        query = select(Run.id).where(
            Run.project_id == project_id,
            Run.created_at < cutoff,
            Run.status.in_(TERMINAL_STATUSES),
        )
        if skipped:
            query = query.where(Run.id.not_in(skipped))
        async with self.sessionmaker() as session:
            return list((await session.scalars(query.order_by(Run.created_at).limit(BATCH))).all())

    async def _archive(self, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Write each run's evidence bundle to every store; returns the runs all of them hold."""
        done = []
        for run_id in run_ids:
            try:
                if await self._archive_one(run_id):
                    done.append(run_id)
            except Exception as exc:  # keep the run: better kept than lost unarchived
                reason = str(exc) if isinstance(exc, archive.ArchiveError) else repr(exc)
                self.problems.append(f"run {run_id} kept: archive failed: {reason}"[:500])
                log.warning("retention: could not archive run %s, keeping it: %s", run_id, reason)
        return done

    async def _archive_one(self, run_id: uuid.UUID) -> bool:
        from cogumi.reports.service import bundle_of

        async with self.sessionmaker() as session:
            run = await session.get(Run, run_id)
            if run is None:
                return False
            document = await bundle_of(session, run=run)
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        for store in self.stores:
            await store.put(key=archive.object_key(run), body=body)
        return True

    async def _delete_runs(self, org_id: uuid.UUID, run_ids: list[uuid.UUID]) -> OrgCounts:
        async with transaction(self.sessionmaker) as session:
            # Re-checked under the write lock: only runs still ended are removed.
            ids = list(
                (
                    await session.scalars(
                        select(Run.id).where(Run.id.in_(run_ids), Run.status.in_(TERMINAL_STATUSES))
                    )
                ).all()
            )
            if not ids:
                return OrgCounts()
            events, size = await storage.measure(session, Event.run_id.in_(ids))
            findings = await _count(session, Finding, Finding.run_id.in_(ids))
            reports = await _count(session, Report, Report.run_id.in_(ids))
            await session.execute(delete(Run).where(Run.id.in_(ids)))
            await storage.forget(session, org_id=org_id, events=events, size=size)
        return OrgCounts(runs=len(ids), events=events, findings=findings, reports=reports)

    async def _delete_loose_events(
        self, org_id: uuid.UUID, project_id: uuid.UUID, cutoff: datetime
    ) -> OrgCounts:
        where = (Event.project_id == project_id, Event.run_id.is_(None), Event.received_at < cutoff)
        async with transaction(self.sessionmaker) as session:
            events, size = await storage.measure(session, *where)
            if events:
                await session.execute(delete(Event).where(*where))
                await storage.forget(session, org_id=org_id, events=events, size=size)
            await session.execute(
                delete(IngestBatch).where(
                    IngestBatch.project_id == project_id, IngestBatch.received_at < cutoff
                )
            )
        return OrgCounts(events=events)

    async def _audit(self, org_id: uuid.UUID, counts: OrgCounts) -> None:
        async with transaction(self.sessionmaker) as session:
            record(
                session, org_id=org_id, action=Action.RETENTION_DELETED,
                actor_label="retention", target_type="organization", target_id=org_id,
                detail=asdict(counts),
            )  # fmt: skip


async def _count(session: AsyncSession, model: type[Any], *where: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def cleanup(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime | None = None,
) -> CleanupResult:
    """One retention pass, unless another process is running one (then ``ran`` is False)."""
    holder = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not await locks.acquire(sessionmaker, name=LOCK_NAME, holder=holder, ttl_sec=LOCK_TTL_SEC):
        log.info("retention: another cleanup is running; skipping")
        return CleanupResult(ran=False)
    try:
        job = Cleanup(sessionmaker=sessionmaker, settings=settings, now=now or utcnow(),
                      holder=holder, stores=archive.stores_from_settings(settings))  # fmt: skip
        result = await job.run()
    finally:
        await locks.release(sessionmaker, name=LOCK_NAME, holder=holder)
    for org_id, counts in result.orgs.items():
        log.info("retention: org %s: %s", org_id, asdict(counts))
    return result


async def schedule(*, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Run :func:`cleanup` every ``retention_interval_sec`` until cancelled."""
    problem = archive.check_available(settings)
    if problem:
        log.error("retention archive is configured but cannot work: %s (runs are kept)", problem)
    while True:
        await asyncio.sleep(settings.retention_interval_sec)
        try:
            await cleanup(sessionmaker=sessionmaker, settings=settings)
        except Exception as exc:  # keep the schedule alive through a DB outage
            log.warning("retention pass failed: %s", exc)
