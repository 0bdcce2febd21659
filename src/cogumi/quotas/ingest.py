"""Quota checks on the ingest path: storage before a batch, the run's event cap inside it.

Ingest calls these once per batch, so each is one statement in the common case.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.events.bus import LiveBus
from cogumi.quotas import runcap, service
from cogumi.quotas.models import OrgQuota
from cogumi.quotas.service import Limits
from cogumi.runs.models import Run


@dataclass(frozen=True)
class IngestQuota:
    """What ingest needs to enforce quotas (the route passes the app's settings and bus)."""

    settings: Settings
    bus: LiveBus

    async def check_storage(self, session: AsyncSession, *, org_id: uuid.UUID) -> Limits:
        """429 ``quota_exceeded`` once the org's estimated storage is used up; else its limits.

        A plain read: the org's row is made by the first batch that counts storage.
        """
        row = await session.scalar(select(OrgQuota).where(OrgQuota.org_id == org_id))
        limits = service.limits_of(row, self.settings)
        await service.check_storage(session, row=row, limits=limits)
        return limits

    def check_row(self, row: Any) -> Limits:
        """:meth:`check_storage` for an org quota row already read (None: no row yet)."""
        limits = service.limits_of(row, self.settings)
        used = service.storage_used(row) if row is not None else 0
        if used >= limits.storage_bytes:
            raise service.storage_exceeded(limits=limits, used=used)
        return limits

    @staticmethod
    def cap(config: dict[str, Any] | None, limits: Limits) -> int:
        """A run's events cap: fixed in its config when it was created, else the org's limit."""
        fixed = runcap.snapshot_cap(config)
        return fixed if fixed is not None else limits.events_per_run

    async def count_stored(
        self, session: AsyncSession, *, org_id: uuid.UUID, events: int, chars: int
    ) -> None:
        """Count stored events towards the org's storage estimate.

        ``chars`` is the length of the stored payload texts, the measure retention
        subtracts (``length()`` of the stored JSON) when it deletes them.
        """
        await service.add_storage(session, org_id=org_id, events=events, payload_bytes=chars)

    async def after_run_events(
        self, session: AsyncSession, *, run_id: uuid.UUID, stored: int, cap: int
    ) -> bool:
        """Warn at 80% of the run's cap, stop it at the cap; True when it was stopped."""
        run = await session.get(Run, run_id)
        if run is None:
            return False
        return await runcap.after_events(session, bus=self.bus, run=run, stored=stored, cap=cap)
