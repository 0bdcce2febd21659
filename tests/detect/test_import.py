"""The sidecar imports cogumi.detect on its hot path: it must stay light."""

from __future__ import annotations

import subprocess
import sys


def test_importing_detect_pulls_in_no_db_or_web_stack() -> None:
    code = (
        "import sys, cogumi.detect\n"
        "heavy = [m for m in ('sqlalchemy', 'fastapi', 'starlette', 'pydantic', 'cogumi.db', 'cogumi.app')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
