"""In a real browser: account controls (sign out, org switcher), project settings (prod
override checklist, tokens, forms, usage and limits), canaries, and the org page's writes."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from tests.web.conftest import PASSWORD, Api, Shot

pytestmark = pytest.mark.e2e

SLOW = 30_000


def email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}@example.com"


async def sign_in(page: Page, address: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/$"))


def accept_confirms(page: Page) -> list[str]:
    """Accept every ``window.confirm`` (revoke buttons ask first); returns their texts."""
    seen: list[str] = []

    async def accept(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return seen


async def new_project(api: Api, **fields: Any) -> str:
    created = await api.client.post(
        "/api/projects", json={"name": f"p-{uuid.uuid4().hex[:6]}", **fields}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def audit_actions(page: Page) -> list[str]:
    await page.goto("/org")
    return await page.locator("table.audit tbody td code").all_inner_texts()


def sidecar_batch(project_id: str) -> dict[str, Any]:
    event = {"ts": datetime.now(UTC).isoformat(), "channel": "http", "type": "request",
             "actor": "target", "destination": {"host": "api.example.com", "path": "/x",
                                                "port": 443, "classification": "tool"},
             "payload_redacted": {"summary": "POST api.example.com/x"}}  # fmt: skip
    return {"project_id": project_id, "run_id": None, "sidecar_version": "0.1.0",
            "batch_id": uuid.uuid4().hex, "events": [event]}  # fmt: skip


async def test_org_switcher_then_sign_out(page: Page, api: Api) -> None:
    address = email("switch")
    await api.signup(address, "Switch Alpha")
    await new_project(api, name="Alpha agent")
    bravo = (await api.client.post("/api/orgs", json={"name": "Switch Bravo"})).json()
    switched = await api.client.post(f"/api/orgs/{bravo['id']}/switch")
    assert switched.status_code == 200, switched.text
    await new_project(api, name="Bravo agent")

    await sign_in(page, address)
    switcher = page.get_by_label("Organisation", exact=True)
    await expect(switcher.locator("option")).to_have_count(2)
    current = await switcher.locator("option:checked").inner_text()
    here, there = ("Alpha", "Bravo") if "Alpha" in current else ("Bravo", "Alpha")
    await page.goto("/projects")
    await expect(page.get_by_role("link", name=f"{here} agent")).to_be_visible()
    await expect(page.get_by_role("link", name=f"{there} agent")).to_have_count(0)

    other = await switcher.locator("option:not(:checked)").get_attribute("value")
    assert other is not None
    await switcher.select_option(other)
    await expect(page).to_have_url(re.compile(r"/$"))
    await expect(switcher.locator("option:checked")).to_contain_text(f"Switch {there}")
    await page.goto("/projects")
    await expect(page.get_by_role("link", name=f"{there} agent")).to_be_visible()
    await expect(page.get_by_role("link", name=f"{here} agent")).to_have_count(0)
    await expect(page.locator("h1")).to_have_text("Projects")
    await page.goto("/org")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Switch {there}")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/projects")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fprojects$"))
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()


async def test_prod_override_checklist(page: Page, api: Api, shot: Shot) -> None:
    address = email("override")
    await api.signup(address, "Override Org")
    project_id = await new_project(api, name="Prod agent", environment="prod")
    await sign_in(page, address)
    await page.goto(f"/projects/{project_id}/settings")
    await expect(page.locator("#environment")).to_contain_text("OFF. Campaigns against")

    await page.get_by_role("button", name="Turn prod override on…").click()
    dialog = page.get_by_role("dialog", name="Allow campaigns against production?")
    await expect(dialog).to_be_visible()
    submit = dialog.get_by_role("button", name="Turn override on")
    boxes = dialog.get_by_role("checkbox")
    await expect(boxes).to_have_count(3)
    for i in range(3):
        await expect(submit).to_be_disabled()
        await boxes.nth(i).check()
    await expect(submit).to_be_enabled()
    await boxes.nth(1).uncheck()  # all three, not "any three clicks"
    await expect(submit).to_be_disabled()
    await boxes.nth(1).check()
    await shot(page, "settings-override-dialog")
    await submit.click()

    await expect(page.locator("#environment .banner.danger")).to_contain_text("ON since")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("prod · override on")
    project = (await api.client.get(f"/api/projects/{project_id}")).json()
    assert project["prod_override_enabled"] is True
    assert "project.prod_override_enabled" in await audit_actions(page)

    await page.goto(f"/projects/{project_id}/settings")
    await page.get_by_role("button", name="Turn prod override off").click()
    await expect(page.locator("#environment")).to_contain_text("OFF. Campaigns against")
    await expect(page.get_by_role("button", name="Turn prod override on…")).to_be_visible()
    project = (await api.client.get(f"/api/projects/{project_id}")).json()
    assert project["prod_override_enabled"] is False
    actions = await audit_actions(page)
    assert actions[:2] == ["project.prod_override_disabled", "project.prod_override_enabled"]


async def test_token_revoke_and_canaries(page: Page, api: Api, server: str) -> None:
    address = email("tokens")
    await api.signup(address, "Token Org")
    project_id = await new_project(api, name="Token agent")
    confirms = accept_confirms(page)
    await sign_in(page, address)
    await page.goto(f"/projects/{project_id}/settings")
    await page.get_by_label("New token name").fill("ci-sidecar")
    await page.get_by_role("button", name="Create token").click()
    token_box = page.get_by_label("Sidecar token", exact=True)
    await expect(token_box).to_have_value(re.compile(r"^cgs_"))
    token = await token_box.input_value()

    async with httpx.AsyncClient(base_url=server, trust_env=False, timeout=30) as sidecar:
        sidecar.headers["X-Sidecar-Token"] = token
        beat = f"/api/projects/{project_id}/sidecar/heartbeat"
        assert (await sidecar.post(beat, json={"sidecar_version": "t"})).status_code == 200

        await page.reload()
        assert token not in await page.content()  # shown once only
        row = page.locator("#tok-h + div tr", has_text="ci-sidecar")
        await expect(row).to_contain_text("active")
        await row.get_by_role("button", name="Revoke").click()
        await expect(row).to_contain_text("revoked", timeout=SLOW)
        await expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
        assert confirms and "Revoke token" in confirms[0]

        refused = await sidecar.post(beat, json={"sidecar_version": "t"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["reason"] == "token_revoked"
        ingest = await sidecar.post("/api/ingest/events", json=sidecar_batch(project_id))
        assert ingest.status_code == 403, ingest.text

    await page.goto(f"/projects/{project_id}")
    await expect(page.get_by_text("No canaries yet.")).to_be_visible()
    await page.get_by_role("button", name="Mint canaries").click()
    env_file = page.locator("#canary-env code")
    await expect(env_file).to_contain_text("=")
    raw = [line.split("=", 1)[1] for line in (await env_file.inner_text()).splitlines() if line]
    assert raw and all(len(value) >= 16 for value in raw)
    await expect(page.get_by_role("button", name="Mint canaries")).to_be_hidden()

    await page.reload()
    listed = (await api.client.get(f"/api/projects/{project_id}/canaries")).json()
    previews = [c["preview"] for c in listed["items"]]
    assert len(previews) == len(raw)
    chips = page.locator("#canary-h ~ ul.chips li")
    await expect(chips).to_have_count(len(raw))
    # previews are short tails, so two canaries may share one: compare as multisets
    shown = await chips.locator("code").all_inner_texts()
    assert sorted(shown) == sorted(previews)
    html = await page.content()
    assert not [value for value in raw if value in html]  # only previews survive a reload
    await expect(page.locator("[data-canary-once]")).to_be_hidden()


async def test_settings_forms_persist_and_name_bad_fields(page: Page, api: Api) -> None:
    address = email("forms")
    await api.signup(address, "Forms Org")
    project_id = await new_project(api, name="Forms agent")
    await sign_in(page, address)
    await page.goto(f"/projects/{project_id}/settings")

    network = page.locator("form", has=page.locator("#s-tool_domains"))
    await page.locator("#s-tool_domains").fill("api.example.com\ntools.example.org")
    await page.locator("#s-sensitive_paths").fill("/admin\n/internal")
    await page.locator("#s-retention").fill("30")
    await network.get_by_role("button", name="Save network rules").click()
    await expect(page.locator("#toast")).to_have_text("Network rules saved")

    await page.locator("#s-tool_domains").fill("api.example.com\nnot a domain!")
    await network.get_by_role("button", name="Save network rules").click()
    error = network.locator('[data-error-for="tool_domains"]')
    await expect(error).to_be_visible()
    await expect(error).not_to_be_empty()
    await expect(page.locator("#s-tool_domains")).to_have_attribute("aria-invalid", "true")
    await page.locator("#s-retention").fill("0")
    await page.locator("#s-tool_domains").fill("api.example.com")
    await network.get_by_role("button", name="Save network rules").click()
    await expect(network.locator('[data-error-for="retention_days"]')).to_be_visible()

    redteam = page.locator("form", has=page.locator("#s-scripts"))
    styles = redteam.get_by_role("checkbox")
    for i in range(await styles.count()):
        await styles.nth(i).set_checked(i == 0)
    kept_style = await styles.nth(0).get_attribute("value")
    await redteam.get_by_role("radio", name=re.compile(r"^high")).check()
    await page.locator("#s-scripts").fill("S1\nS3")
    await redteam.get_by_role("button", name="Save red-team settings").click()
    await expect(page.locator("#toast")).to_have_text("Red-team settings saved")

    await page.locator("#s-scripts").fill("S1\nnot a script id!")
    await redteam.get_by_role("button", name="Save red-team settings").click()
    await expect(redteam.locator('[data-error-for="redteam"]')).to_contain_text("script id")
    await styles.nth(0).uncheck()
    await page.locator("#s-scripts").fill("S1")
    await redteam.get_by_role("button", name="Save red-team settings").click()
    await expect(redteam.locator('[data-error-for="redteam"]')).to_be_visible()

    await page.reload()  # the refused saves changed nothing
    await expect(page.locator("#s-tool_domains")).to_have_value(
        "api.example.com\ntools.example.org"
    )
    await expect(page.locator("#s-sensitive_paths")).to_have_value("/admin\n/internal")
    await expect(page.locator("#s-retention")).to_have_value("30")
    await expect(page.locator("#s-scripts")).to_have_value("S1\nS3")
    await expect(redteam.get_by_role("radio", name=re.compile(r"^high"))).to_be_checked()
    checked = redteam.locator("input[type=checkbox]:checked")
    await expect(checked).to_have_count(1)
    await expect(checked).to_have_attribute("value", kept_style or "")
    saved = (await api.client.get(f"/api/projects/{project_id}")).json()
    assert saved["tool_domains"] == ["api.example.com", "tools.example.org"]
    assert saved["redteam"] == {
        "styles": [kept_style],
        "intensity": "high",
        "scripts": ["S1", "S3"],
    }


async def test_org_page_invites_roles_and_keys(page: Page, api: Api, server: str) -> None:
    address = email("orgadmin")
    await api.signup(address, "Writes Org")
    member_email = email("member")
    invite = (
        await api.client.post("/api/invitations", json={"email": member_email, "role": "MEMBER"})
    ).json()
    token = urlparse(invite["invite_url"]).path.rstrip("/").split("/")[-1]
    async with httpx.AsyncClient(base_url=server, trust_env=False, timeout=30) as joiner:
        joined = await joiner.post(f"/api/invitations/{token}/accept",
                                   json={"password": PASSWORD, "display_name": "Mo Member"})  # fmt: skip
        assert joined.status_code == 200, joined.text
    confirms = accept_confirms(page)
    await sign_in(page, address)
    await page.goto("/org")

    invitee = email("invitee")
    await page.get_by_label("Email", exact=True).fill(invitee)
    await page.locator("#inv-role").select_option("VIEWER")
    await page.get_by_role("button", name="Invite").click()
    link = page.get_by_label("Invitation link", exact=True)
    await expect(link).to_have_value(re.compile(r"/invite/"))
    assert (await link.input_value()).startswith(server)

    role = page.get_by_label(f"Role of {member_email}")
    await expect(role).to_have_value("MEMBER")
    await role.select_option("ADMIN")
    await expect(page.locator("#toast")).to_have_text("Role changed to ADMIN")

    await page.get_by_label("Name", exact=True).fill("ci pipeline")
    await page.get_by_role("button", name="Create key").click()
    key_box = page.get_by_label("API key", exact=True)
    await expect(key_box).to_have_value(re.compile(r"^cgk_"))
    key = await key_box.input_value()
    async with httpx.AsyncClient(base_url=server, trust_env=False, timeout=30) as ci:
        ci.headers["Authorization"] = f"Bearer {key}"
        assert (await ci.get("/api/projects")).status_code == 200

        await page.reload()
        assert key not in await page.content()
        pending = page.locator("#inv-h ~ div tr", has_text=invitee)
        await expect(pending).to_contain_text("VIEWER")
        await expect(page.get_by_label(f"Role of {member_email}")).to_have_value("ADMIN")
        row = page.locator("#keys-h ~ div tr", has_text="ci pipeline")
        await expect(row).to_contain_text("active")
        await row.get_by_role("button", name="Revoke").click()
        await expect(row).to_contain_text("revoked", timeout=SLOW)
        assert any("Revoke key ci pipeline" in text for text in confirms)
        assert (await ci.get("/api/projects")).status_code == 401

    members = (await api.client.get("/api/members")).json()
    assert {m["email"]: m["role"] for m in members}[member_email] == "ADMIN"
    actions = await audit_actions(page)
    for action in ("api_key.revoked", "api_key.created", "member.role_changed", "member.invited"):
        assert action in actions, (action, actions)


async def test_usage_and_limits_follow_a_new_run(page: Page, api: Api, shot: Shot) -> None:
    address = email("usage")
    await api.signup(address, "Usage Org")
    project_id = await new_project(api, name="Usage agent")
    await new_project(api, name="Other agent")
    await sign_in(page, address)
    await page.goto(f"/projects/{project_id}/settings")
    usage = page.locator("#usage")
    today = usage.locator('tr[data-quota="runs_per_day_per_project"]')
    await expect(today.locator("[data-used]")).to_have_text("0 runs")
    await expect(usage.locator('tr[data-quota="projects"] [data-percent]')).to_have_text("40.0%")

    run = await api.client.post(f"/api/projects/{project_id}/runs", json={})
    assert run.status_code == 201, run.text
    async with asyncio.timeout(60):  # no agent URL: the run fails at once, still counted
        while (await api.client.get(f"/api/runs/{run.json()['id']}")).json()["status"] != "failed":
            await asyncio.sleep(0.2)
    await page.reload()
    await expect(today).to_contain_text("Runs today (UTC)")
    await expect(today.locator("[data-used]")).to_have_text("1 run")
    await expect(today.locator("[data-limit]")).to_have_text("10 runs")
    await expect(today.locator("[data-percent]")).to_have_text("10.0%")
    await expect(today.locator("[data-state]")).to_have_text("within the limit")
    month = usage.locator('tr[data-quota="runs_per_month"]')
    await expect(month.locator("[data-used]")).to_have_text("1 run")
    await expect(month.locator("[data-limit]")).to_have_text("100 runs")
    await expect(month.locator("[data-percent]")).to_have_text("1.0%")
    projects = usage.locator('tr[data-quota="projects"]')
    await expect(projects.locator("[data-used]")).to_have_text("2 projects")
    await expect(projects.locator("[data-limit]")).to_have_text("5 projects")
    await expect(usage.locator('tr[data-quota="events_per_run"] [data-limit]')).to_have_text(
        "10,000 events"
    )
    await expect(usage.locator('tr[data-quota="storage_bytes"] [data-limit]')).to_have_text(
        "1.0 GB"
    )
    ingest = usage.locator('tr[data-quota="ingest_per_min"]')
    await expect(ingest.locator("[data-limit]")).to_have_text("300 events/min")
    duration = usage.locator('tr[data-quota="run_duration_sec"]')
    await expect(duration.locator("[data-limit]")).to_have_text("15 min")
    await expect(usage.locator("[data-quota-owner]")).to_contain_text("OWNER")
    await shot(page, "settings-usage")

    other = (await api.client.get("/api/projects")).json()
    other_id = next(p["id"] for p in other["items"] if p["name"] == "Other agent")
    await page.goto(f"/projects/{other_id}/settings")  # the day counts per project
    await expect(today.locator("[data-used]")).to_have_text("0 runs")
    await expect(month.locator("[data-used]")).to_have_text("1 run")
