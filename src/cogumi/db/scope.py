"""The one place tenant scoping is applied: every tenant read goes through here.

Another org's object answers exactly like a missing one (404), so ids never
reveal what exists elsewhere.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.errors import NotFound

T = TypeVar("T")


def in_org(model: type[T], org_id: uuid.UUID) -> Select[Any]:
    """``SELECT model WHERE model.org_id = org_id``."""
    column: Any = model.org_id  # type: ignore[attr-defined]
    return select(model).where(column == org_id)


async def get_in_org(
    session: AsyncSession, model: type[T], object_id: uuid.UUID, org_id: uuid.UUID, *, what: str
) -> T:
    """Load one tenant row by id inside ``org_id``; 404 naming ``what`` otherwise."""
    row_id: Any = model.id  # type: ignore[attr-defined]
    obj: T | None = await session.scalar(in_org(model, org_id).where(row_id == object_id))
    if obj is None:
        raise NotFound(f"{what} not found")
    return obj
