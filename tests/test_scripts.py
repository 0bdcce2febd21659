"""The README's two commands pass their arguments on: ``scripts/quickstart`` to
``cogumi serve`` and ``scripts/test`` to pytest, without the shared setup script
reading them as its own.

Each runs from a copy of ``scripts/`` beside a stand-in ``.venv`` whose install
stamp is fresh and whose programs are this checkout's, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def checkout(tmp_path: Path, stamp: str) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    os.utime(root / "pyproject.toml", (1_000_000_000, 1_000_000_000))  # older than the stamp
    (root / ".venv" / "bin").mkdir(parents=True)
    # this checkout's python, except that an install (pip) fails without touching anything
    python = root / ".venv" / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = pip ]; then echo "stand-in python: nothing may be installed" >&2; exit 97; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    (root / ".venv" / "bin" / "cogumi").symlink_to(VENV_BIN / "cogumi")
    (root / ".venv" / stamp).touch()
    return root


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COGUMI_"))}
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_quickstart_passes_its_arguments_to_serve(tmp_path: Path) -> None:
    root = checkout(tmp_path, ".installed")
    done = run(root / "scripts" / "quickstart", "--port", "8765", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: cogumi serve" in done.stdout
    assert "pip" not in done.stderr  # nothing was installed, and no extras named "--port"
    assert sorted(p.name for p in (root / ".venv").iterdir()) == [".installed", "bin"]


def test_test_script_passes_its_arguments_to_pytest(tmp_path: Path) -> None:
    root = checkout(tmp_path, ".installed-dev")
    done = run(root / "scripts" / "test", "--version")
    assert done.returncode == 0, done.stderr
    assert "pytest" in done.stdout + done.stderr
    assert sorted(p.name for p in (root / ".venv").iterdir()) == [".installed-dev", "bin"]
