"""``GET /api/health``: the process is up and its database answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from cogumi import __version__
from cogumi.tenancy.deps import DbSession

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(session: DbSession) -> dict[str, Any]:
    await session.execute(text("SELECT 1"))
    return {"ok": True, "version": __version__, "db": "ok"}
