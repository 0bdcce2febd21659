"""The migrations build exactly the models' schema, and every tenant table has org_id."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

import cogumi.db.models  # noqa: F401 - registers every table
from cogumi.db.base import Base

# Tables that are not owned by one org (they span orgs by nature).
NOT_TENANT = {"organizations", "users", "sessions", "alembic_version", "job_locks"}


async def test_migrations_match_models(app) -> None:  # type: ignore[no-untyped-def]
    engine: AsyncEngine = app.state.engine

    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


def test_every_tenant_table_has_org_id() -> None:
    for table in Base.metadata.sorted_tables:
        if table.name in NOT_TENANT:
            continue
        assert "org_id" in table.columns, f"{table.name} lacks org_id"
        fks = {fk.target_fullname for fk in table.columns["org_id"].foreign_keys}
        assert fks == {"organizations.id"}, table.name


async def test_sqlite_runs_in_wal_mode(app, backend: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    async with app.state.engine.connect() as conn:
        if backend == "sqlite":
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA foreign_keys"))) == 1
        else:
            assert "PostgreSQL" in (await conn.scalar(text("SELECT version()")))
