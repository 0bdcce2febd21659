"""Browser tests: Debian's chromium driven by Playwright against a real `cogumi serve`.

Every process is real and on loopback: the server (embedded SQLite in a temp
dir), `cogumi sidecar`, `cogumi demo-agent`. Playwright never downloads a
browser; it drives /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.servers import free_port

CHROMIUM = "/usr/bin/chromium"
COGUMI = str(Path(sys.executable).parent / "cogumi")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "a long enough password"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without COGUMI_* or proxy settings (tests choose them)."""
    skip = ("COGUMI_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(extra)
    return env


@dataclass
class Proc:
    process: asyncio.subprocess.Process
    name: str

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_process(*args: str, env: dict[str, str], cwd: Path, name: str) -> Proc:
    log = open(cwd / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    process = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=cwd, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    return Proc(process=process, name=name)


async def wait_http(url: str, proc: Proc, *, method: str = "GET", within: float = 60) -> None:
    async with httpx.AsyncClient(trust_env=False) as client, asyncio.timeout(within):
        while True:
            assert proc.process.returncode is None, f"{proc.name} exited early"
            try:
                await client.request(method, url, timeout=1)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)


async def wait_port(port: int, proc: Proc, within: float = 30) -> None:
    async with asyncio.timeout(within):
        while True:
            assert proc.process.returncode is None, f"{proc.name} exited early"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@pytest.fixture(scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A real `cogumi serve` on a free loopback port with a fresh embedded store."""
    workdir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = clean_env(COGUMI_PORT=str(port), COGUMI_HOST="127.0.0.1",
                    COGUMI_LOGIN_RATE_LIMIT="1000")  # fmt: skip
    proc = await start_process(COGUMI, "serve", env=env, cwd=workdir, name="serve")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/api/health", proc)
        yield base
    finally:
        await proc.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser, server: str) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (own cookies) at a laptop half-screen size."""
    ctx = await browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    await ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A page that fails the test on any uncaught script error or console error."""
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield tab
    real = [e for e in errors if "status of 4" not in e]  # refused input is expected
    assert not real, f"browser errors: {real}"


Shot = Callable[[Page, str], Awaitable[None]]


@pytest.fixture
def shot() -> Shot:
    """Save a full-page screenshot under test-artifacts/ (git-ignored) for review."""
    ARTIFACTS.mkdir(exist_ok=True)

    async def take(tab: Page, name: str) -> None:
        await tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return take


class Api:
    """A signed-in API client against the real server (for setup the test is not about)."""

    def __init__(self, base: str) -> None:
        self.client = httpx.AsyncClient(base_url=base, trust_env=False, timeout=30)

    async def signup(self, email: str, org: str) -> dict[str, object]:
        response = await self.client.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD, "org_name": org}
        )
        assert response.status_code == 201, response.text
        self.client.headers["X-CSRF-Token"] = self.client.cookies["cogumi_csrf"]
        data: dict[str, object] = response.json()
        return data

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def api(server: str) -> AsyncIterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        await client.close()
