"""Small helpers shared by the projects tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.tenancy.models import AuditLog


def unique_name(tag: str = "proj") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


async def create_project(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": unique_name(), **fields}
    response = await client.post("/api/projects", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def audit_rows(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: uuid.UUID, action: str
) -> list[AuditLog]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditLog)
            .where(AuditLog.org_id == org_id, AuditLog.action == action)
            .order_by(AuditLog.created_at)
        )
        return list(rows.all())


def error_fields(response: httpx.Response) -> list[str]:
    """Field names of a 422 answer (asserting the one error shape on the way)."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    return [f["field"] for f in body["fields"]]
