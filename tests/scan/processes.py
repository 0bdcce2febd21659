"""Real ``cogumi`` processes for the scan tests: demo agents, scans, a server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port

COGUMI = str(Path(sys.executable).parent / "cogumi")
SECRET = "sk-proj-Vt3hQ8zL1nR6yB4mK9wP2sD7fJ5cX0aG3eU8iO1uY6rT"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the runner's own settings, proxies or demo secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COGUMI_") and "proxy" not in k.lower() and k != "DEMO_AGENT_SECRET"
    }
    return env | extra


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    url: str


@contextlib.contextmanager
def demo_agent(profile: str, *, proxy_port: int | None = None) -> Iterator[Agent]:
    """``cogumi demo-agent`` with a known secret; its tools go through the sidecar port."""
    env = clean_env(DEMO_AGENT_SECRET=SECRET)
    if proxy_port is not None:
        env["HTTP_PROXY"] = env["HTTPS_PROXY"] = f"http://127.0.0.1:{proxy_port}"
    proc = subprocess.Popen(
        [COGUMI, "demo-agent", "--listen", "127.0.0.1:0", "--profile", profile],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("cogumi demo-agent: agent "), line
        yield Agent(proc, line.split()[3])
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cogumi(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COGUMI, *args], env=clean_env(), capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str


@contextlib.contextmanager
def cogumi_serve(data_dir: Path) -> Iterator[Server]:
    port = free_port()
    env = clean_env(
        COGUMI_PORT=str(port), COGUMI_DATA_DIR=str(data_dir), COGUMI_LOG_LEVEL="WARNING"
    )
    proc = subprocess.Popen(
        [COGUMI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "cogumi serve exited"
            assert time.monotonic() < deadline, "cogumi serve did not come up"
            time.sleep(0.2)
        yield Server(proc, url)
    finally:
        stop(proc)
