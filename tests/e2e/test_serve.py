"""`cogumi serve` as a real process: migrates a fresh data dir, prints its URL, answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

pytestmark = pytest.mark.e2e


def test_serve_on_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env["COGUMI_PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cogumi", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        assert response.status_code == 200
        assert (tmp_path / ".data" / "cogumi.db").exists()
        register = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/register",
            json={"email": "first@example.com", "password": "a long enough password"},
            timeout=10,
        )
        assert register.status_code == 201
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in output
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -15)
    assert "Application shutdown complete" in output
