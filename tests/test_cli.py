"""The CLI: version, migrate (idempotent) on a fresh SQLite data directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cogumi import __version__


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


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


def test_migrate_creates_sqlite_and_is_idempotent(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "COGUMI_DATA_DIR": str(tmp_path / "data")}
    env.pop("COGUMI_DATABASE_URL", None)
    for _ in range(2):
        result = run_cli("migrate", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    assert (tmp_path / "data" / "cogumi.db").exists()

    from cogumi.db.migrate import current_revision

    assert current_revision(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cogumi.db'}") == "0001"
