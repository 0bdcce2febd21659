"""Child processes of the reliability cluster: each logs to a file, can be stopped,
killed and started again, and says when it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

# Request lines that say nothing when a test fails (left out of log tails).
_ROUTINE = re.compile(r'"logger": "httpx"|"logger": "cogumi.access".*"status": [23]\d\d')


@dataclass
class Proc:
    """One child process whose output goes to a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- start {' '.join(self.argv[:3])} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def check_alive(self) -> None:
        if not self.alive:
            code = None if self.process is None else self.process.returncode
            raise AssertionError(f"{self.name} exited ({code}):\n{self.tail(30)}")

    async def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()
        return self.process.returncode

    async def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup (a crashed machine)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log, leaving out routine request lines."""
        try:
            content = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        kept = [line for line in content if not _ROUTINE.search(line)]
        return "\n".join(kept[-lines:])


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.1
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


async def http_ok(method: str, url: str, *, watch: Proc | None = None) -> bool:
    if watch is not None:
        watch.check_alive()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            return (await client.request(method, url)).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Serve:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 90) -> None:
        ready = f"{self.url}/api/health/ready"
        await until(lambda: http_ok("GET", ready, watch=self.proc), timeout=timeout,
                    what=f"{self.proc.name} to be ready", every=0.2)  # fmt: skip


@dataclass
class Worker:
    proc: Proc

    def holds(self, lease_owner: str | None) -> bool:
        """Whether a run's ``lease_owner`` is this process (``host:pid:random``)."""
        return bool(lease_owner) and f":{self.proc.pid}:" in str(lease_owner)

    async def wait_ready(self, timeout: float = 90) -> None:
        async def listening() -> bool:
            self.proc.check_alive()
            return "waiting for runs" in self.proc.log.read_text(errors="replace")

        await until(listening, timeout=timeout, what=f"{self.proc.name} to listen", every=0.2)
