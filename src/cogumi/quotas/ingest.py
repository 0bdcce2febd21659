"""Quota checks on the ingest path: storage before a batch, the run's event cap inside it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.events.bus import LiveBus
from cogumi.quotas import runcap, service
from cogumi.runs.models import Run


@dataclass(frozen=True)
class IngestQuota:
    """What ingest needs to enforce quotas (the route passes the app's settings and bus)."""

    settings: Settings
    bus: LiveBus

    async def check_storage(self, session: AsyncSession, *, org_id: uuid.UUID) -> None:
        """429 ``quota_exceeded`` once the org's estimated storage is used up."""
        await service.check_ingest_storage(session, org_id=org_id, settings=self.settings)

    async def room(self, session: AsyncSession, *, run: Run, count: int) -> tuple[int, int]:
        """How many of ``count`` events the run can still take, and its cap.

        The run row is locked first, so concurrent batches share what is left
        instead of each seeing the same room.
        """
        cap = await runcap.cap_of(session, run=run, settings=self.settings)
        last = await session.scalar(select(Run.last_seq).where(Run.id == run.id).with_for_update())
        return max(0, min(count, cap - int(last or 0))), cap

    async def stored(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        rows: Iterable[Mapping[str, Any]],
        run: Run | None,
        last_seq: int | None,
        cap: int | None,
    ) -> None:
        """Count the stored rows towards storage; warn or stop the run near its cap."""
        rows = list(rows)
        # Serialised as the JSON column stores it, so retention subtracts the same sizes.
        size = sum(len(json.dumps(r["payload_redacted"])) for r in rows)
        await service.add_storage(session, org_id=org_id, events=len(rows), payload_bytes=size)
        if run is not None and last_seq is not None and cap is not None:
            await runcap.after_events(session, bus=self.bus, run=run, stored=last_seq, cap=cap)
