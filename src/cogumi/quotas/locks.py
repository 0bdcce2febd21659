"""A named lock shared by every process through the database (one ``job_locks`` row).

Taking it is one conditional ``UPDATE``: free, or held past its expiry (the
holder died). It works the same on PostgreSQL and SQLite and needs no
advisory-lock support; a holder that outlives the TTL must renew it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.quotas.models import JobLock
from cogumi.quotas.service import _insert_ignore


async def acquire(
    sessionmaker: async_sessionmaker[AsyncSession], *, name: str, holder: str, ttl_sec: float
) -> bool:
    """True when ``holder`` now holds ``name`` (free or expired); False when someone else does."""
    now = utcnow()
    async with transaction(sessionmaker) as session:
        await session.execute(_insert_ignore(session, JobLock).values(name=name))
        taken = await session.scalar(
            update(JobLock)
            .where(JobLock.name == name)
            .where(or_(JobLock.holder.is_(None), JobLock.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=ttl_sec))
            .returning(JobLock.name)
        )
    return taken is not None


async def renew(
    sessionmaker: async_sessionmaker[AsyncSession], *, name: str, holder: str, ttl_sec: float
) -> bool:
    until: datetime = utcnow() + timedelta(seconds=ttl_sec)
    async with transaction(sessionmaker) as session:
        kept = await session.scalar(
            update(JobLock)
            .where(JobLock.name == name, JobLock.holder == holder)
            .values(expires_at=until)
            .returning(JobLock.name)
        )
    return kept is not None


async def release(
    sessionmaker: async_sessionmaker[AsyncSession], *, name: str, holder: str
) -> None:
    async with transaction(sessionmaker) as session:
        await session.execute(
            update(JobLock)
            .where(JobLock.name == name, JobLock.holder == holder)
            .values(holder=None, expires_at=None)
        )
