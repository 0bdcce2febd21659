"""Helpers of the quota and retention tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.events.models import StreamMessage

FINAL = {"completed", "failed", "canceled", "stopped_quota"}


async def set_quotas(client: httpx.AsyncClient, **values: Any) -> dict[str, Any]:
    response = await client.patch("/api/quotas", json=values)
    assert response.status_code == 200, response.text
    return {item["quota"]: item for item in response.json()["items"]}


async def quotas(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/quotas")
    assert response.status_code == 200, response.text
    return {item["quota"]: item for item in response.json()["items"]}


async def new_project(client: httpx.AsyncClient, **fields: Any) -> str:
    response = await client.post(
        "/api/projects", json={"name": f"q-{uuid.uuid4().hex[:8]}", **fields}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def wait_final(
    client: httpx.AsyncClient, run_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = (await client.get(f"/api/runs/{run_id}")).json()
        if data["status"] in FINAL:
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.05)


def assert_quota_error(response: httpx.Response, quota: str, limit: int, used: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "quota_exceeded"
    assert body["quota"] == quota
    assert body["limit"] == limit
    assert body["used"] == used
    assert isinstance(body["retry_after"], int) and body["retry_after"] >= 1
    assert response.headers["Retry-After"] == str(body["retry_after"])
    assert quota in body["message"]


async def stream_kinds(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID
) -> list[tuple[str, dict[str, Any]]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(StreamMessage).where(StreamMessage.run_id == run_id).order_by(StreamMessage.seq)
        )
        return [(row.kind, row.data) for row in rows]
