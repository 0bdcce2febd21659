"""Tables of the quotas area: per-org limits and usage counters, notices, job locks.

Usage that must hold under concurrency is a counter row changed with one
conditional ``UPDATE ... WHERE used + n <= limit RETURNING``: the row lock
(PostgreSQL) or the write lock every request takes (SQLite ``BEGIN
IMMEDIATE``) makes the check and the increment one step, so twenty parallel
requests against ten remaining runs get exactly ten.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cogumi.db.base import Base, IdMixin, TenantMixin, utcnow


class OrgQuota(TenantMixin, Base):
    """One row per org: its overrides (NULL = the deployment default) and storage counters.

    Storage is an estimate kept as counters, moved by ingest, by the end of a
    run and by retention, so reading it never scans the event table.
    """

    __tablename__ = "org_quotas"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    projects: Mapped[int | None] = mapped_column(Integer, default=None)
    runs_per_month: Mapped[int | None] = mapped_column(Integer, default=None)
    runs_per_day_per_project: Mapped[int | None] = mapped_column(Integer, default=None)
    events_per_run: Mapped[int | None] = mapped_column(Integer, default=None)
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    stored_events: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_event_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("org_id"),)


class QuotaCounter(IdMixin, TenantMixin, Base):
    """How much of a periodic quota is used, e.g. ``runs_month:2025-06`` or
    ``runs_day:<project>:2025-06-12``. One row per (org, key)."""

    __tablename__ = "quota_counters"
    __table_args__ = (UniqueConstraint("org_id", "key"),)

    key: Mapped[str] = mapped_column(String(96))
    used: Mapped[int] = mapped_column(Integer, default=0)


class QuotaNotice(IdMixin, TenantMixin, Base):
    """A one-time notice about a run (the 80% ``quota.warning``): inserting it twice
    fails, so ingest and the worker never announce the same warning twice."""

    __tablename__ = "quota_notices"
    __table_args__ = (UniqueConstraint("run_id", "kind"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobLock(Base):
    """A named lock held across processes (the retention job runs one at a time)."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
