"""``cogumi admin quotas``: a self-hosting operator sets an org's limits from the shell.

Same service and audit trail as ``PATCH /api/quotas``; the actor is recorded
as ``cli:admin``.
"""

from __future__ import annotations

import uuid
from typing import Any

from cogumi.config import Settings
from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.errors import NotFound
from cogumi.quotas import service
from cogumi.tenancy.audit import Action, record
from cogumi.tenancy.models import Organization


async def set_quotas(
    settings: Settings, *, org_id: uuid.UUID, changes: dict[str, int | None]
) -> list[dict[str, Any]]:
    """Apply ``changes`` to the org's overrides and return its usage afterwards."""
    engine = make_engine(settings.effective_database_url, **settings.engine_options())
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            if await session.get(Organization, org_id) is None:
                raise NotFound(f"organisation {org_id} not found")
            changed = await service.set_overrides(session, org_id=org_id, changes=changes)
            if changed:
                record(
                    session, org_id=org_id, action=Action.QUOTAS_UPDATED, actor_label="cli:admin",
                    target_type="organization", target_id=org_id, detail={"changed": changed},
                )  # fmt: skip
            return await service.usage(session, org_id=org_id, settings=settings)
    finally:
        await engine.dispose()
