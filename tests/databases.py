"""Throwaway test databases: a SQLite file, and a fresh PostgreSQL database per session.

PostgreSQL is the server on this machine (127.0.0.1:5432, trust auth) unless
``COGUMI_TEST_PG_ADMIN_URL`` names another. When it is unreachable the
PostgreSQL half of the suite is skipped locally, and fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

PG_ADMIN_URL = os.environ.get(
    "COGUMI_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    """Create ``cogumi_test_<hex>``; returns its async SQLAlchemy URL (skip/fail if unreachable)."""
    name = f"cogumi_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc!r}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
