"""Helpers for tenancy tests: apps with their own settings, and audit-log reads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.app import create_app
from cogumi.tenancy.models import AuditLog
from tests.conftest import make_settings

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def custom_app(database_url: str, tmp_path: Path) -> AppFactory:
    """``async with custom_app(login_rate_limit=3) as app``: an app with its own settings
    (same database as the shared app), started and stopped around the block."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(make_settings(database_url, tmp_path, **overrides))
        async with application.router.lifespan_context(application):
            yield application

    return factory


def client_for(app: FastAPI, ip: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
    """A client of ``app`` that appears to connect from ``ip``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 40000)),
        base_url="http://testserver",
        **kwargs,
    )


async def audit_rows(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: uuid.UUID, action: str | None = None
) -> list[AuditLog]:
    query = select(AuditLog).where(AuditLog.org_id == org_id)
    if action is not None:
        query = query.where(AuditLog.action == action)
    async with sessionmaker() as session:
        return list((await session.scalars(query.order_by(AuditLog.created_at))).all())
