"""The CLI: version; migrate (idempotent) on a fresh SQLite data directory and on a
fresh PostgreSQL database; ``serve`` migrates PostgreSQL at start; ``.env`` in the
working directory configures a command, and a real environment variable wins."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

import cogumi.db.models  # noqa: F401 - registers every table
from cogumi import __version__
from cogumi.db.base import Base
from cogumi.db.migrate import alembic_config, current_revision
from tests.databases import create_pg_database, drop_pg_database
from tests.servers import free_port


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cogumi", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any ``COGUMI_`` setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env.update(values)
    return env


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def pg_tables(url: str) -> set[str]:
    async def read() -> set[str]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        finally:
            await conn.close()
        return {row["tablename"] for row in rows}

    return asyncio.run(read())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (skipped locally when PostgreSQL is
    unreachable; a failure under CI=true)."""
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_migrate_creates_sqlite_and_is_idempotent(tmp_path: Path) -> None:
    env = clean_env(COGUMI_DATA_DIR=str(tmp_path / "data"))
    for _ in range(2):
        result = run_cli("migrate", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    assert (tmp_path / "data" / "cogumi.db").exists()
    assert current_revision(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cogumi.db'}") == (
        head_revision()
    )


def test_migrate_on_postgresql_is_idempotent(pg_url: str, tmp_path: Path) -> None:
    assert pg_tables(pg_url) == set()
    env = clean_env(COGUMI_DATABASE_URL=pg_url, COGUMI_DATA_DIR=str(tmp_path / "data"))
    for _ in range(2):
        result = run_cli("migrate", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    assert current_revision(pg_url) == head_revision()
    assert set(Base.metadata.tables) | {"alembic_version"} <= pg_tables(pg_url)
    assert not (tmp_path / "data" / "cogumi.db").exists()  # PostgreSQL, not the SQLite default


def test_serve_migrates_a_fresh_postgresql_database_at_start(pg_url: str, tmp_path: Path) -> None:
    assert pg_tables(pg_url) == set()
    port = free_port()
    env = clean_env(
        COGUMI_DATABASE_URL=pg_url,
        COGUMI_DATA_DIR=str(tmp_path / "data"),
        COGUMI_PORT=str(port),
        COGUMI_SECRET_KEY="cli-test-secret-key",
        COGUMI_RETENTION_INTERVAL_SEC="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cogumi", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                ready = httpx.get(f"{base}/api/health/ready", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        assert current_revision(pg_url) == head_revision()
        assert set(Base.metadata.tables) <= pg_tables(pg_url)
        register = httpx.post(
            f"{base}/api/auth/register",
            json={"email": "first@example.com", "password": "a long enough password"},
            timeout=30,
        )
        assert register.status_code == 201, register.text
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    assert "store: PostgreSQL" in output
    assert proc.returncode in (0, -15)


def test_dotenv_in_working_directory_configures_the_cli(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"COGUMI_DATA_DIR={tmp_path / 'from-dotenv'}\n")
    result = run_cli("migrate", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-dotenv" / "cogumi.db").exists()
    # A real environment variable wins over the .env file.
    env = clean_env(COGUMI_DATA_DIR=str(tmp_path / "from-env"))
    result = run_cli("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env" / "cogumi.db").exists()
    assert not (tmp_path / ".data").exists()
