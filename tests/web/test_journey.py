"""The whole first-run journey in a real browser.

Sign up -> create project -> wizard (token shown once, snippets, verify with a
running `cogumi sidecar`, validate a `cogumi demo-agent`) -> start a campaign ->
the feed fills live -> proof drawer -> Jump moves the timeline -> replay plays
-> triage a finding. Screenshots of each main page go to test-artifacts/.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import COGUMI as COGUMI_BIN
from tests.web.conftest import PASSWORD, Proc, Shot, clean_env, free_port, start_process, wait_port

pytestmark = pytest.mark.e2e

TIMEOUT = 90_000


async def sign_up(page: Page, email: str) -> None:
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Your name").fill("Dana Reyes")
    await page.get_by_label("Work email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Organisation").fill("Acme Security")
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(re.compile(r"/projects/new$"))


async def create_project(page: Page) -> str:
    # Bad input first: the API's 422 lands next to the field, nothing is created.
    await page.get_by_label("Name", exact=True).fill("   ")
    await page.get_by_role("button", name="Create project and connect").click()
    await expect(page.locator('[data-error-for="name"]')).to_be_visible()
    await page.get_by_label("Name", exact=True).fill("Support copilot")
    await page.get_by_role("button", name="Create project and connect").click()
    await expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]+/connect\?step=1$"))
    match = re.search(r"/projects/([0-9a-f-]+)/connect", page.url)
    assert match is not None
    return match.group(1)


async def wizard_token(page: Page, shot: Shot) -> str:
    nxt = page.get_by_role("link", name="Next: deploy the sidecar")
    await expect(nxt).to_have_attribute("aria-disabled", "true")
    await page.get_by_role("button", name="Create token").click()
    token_box = page.get_by_label("Sidecar token", exact=True)
    await expect(token_box).to_have_value(re.compile(r"^cgs_"))
    token = await token_box.input_value()
    await page.get_by_role("button", name="Copy sidecar token").click()
    assert await page.evaluate("navigator.clipboard.readText()") == token
    await expect(nxt).to_have_attribute("aria-disabled", "true")  # gated until "I saved it"
    await page.get_by_label("I saved the token somewhere safe").check()
    await expect(nxt).not_to_have_attribute("aria-disabled", "true")
    await shot(page, "wizard-1-token")
    await nxt.click()
    await expect(page).to_have_url(re.compile(r"step=2$"))
    return token


async def wizard_snippets(page: Page, shot: Shot, project_id: str) -> None:
    tabs = page.get_by_role("tab")
    await expect(tabs).to_have_count(6)
    first = tabs.first
    await first.focus()
    await page.keyboard.press("ArrowRight")  # keyboard moves between tabs
    second = tabs.nth(1)
    await expect(second).to_have_attribute("aria-selected", "true")
    await expect(second).to_be_focused()
    panel = page.locator(f"#{await second.get_attribute('aria-controls')}")
    await expect(panel).to_be_visible()
    await expect(panel).to_contain_text(project_id)
    await expect(panel).to_contain_text("<SIDECAR_TOKEN>")
    await panel.get_by_role("button", name=re.compile("^Copy")).click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert project_id in copied and "<SIDECAR_TOKEN>" in copied
    for name in ("env", "YAML", "FastAPI", "Express"):
        await page.get_by_role("tab", name=re.compile(name, re.I)).first.click()
    await shot(page, "wizard-2-snippets")
    await page.get_by_role("link", name="Next: verify").click()


async def run_until(page: Page, status: str) -> None:
    await expect(page.locator("[data-run-status]")).to_contain_text(status, timeout=TIMEOUT)


async def test_first_run_journey(page: Page, server: str, shot: Shot, tmp_path: Path) -> None:
    email = f"dana-{uuid.uuid4().hex[:8]}@example.com"
    await sign_up(page, email)
    project_id = await create_project(page)
    token = await wizard_token(page, shot)
    await wizard_snippets(page, shot, project_id)

    # Step 3: a real sidecar; the card turns "connected" without a reload.
    await expect(page).to_have_url(re.compile(r"step=3$"))
    badge = page.locator("[data-conn-badge]")
    await expect(badge).to_have_text("waiting for a heartbeat")
    proxy_port, agent_port = free_port(), free_port()
    procs: list[Proc] = []
    try:
        sidecar_env = clean_env(SIDECAR_TOKEN=token, PROJECT_ID=project_id, INGEST_URL=server,
                                HEARTBEAT_INTERVAL_SEC="1", BATCH_FLUSH_MS="100")  # fmt: skip
        procs.append(await start_process(COGUMI_BIN, "sidecar", "--listen",
                     f"127.0.0.1:{proxy_port}", env=sidecar_env, cwd=tmp_path, name="sidecar"))  # fmt: skip
        await wait_port(proxy_port, procs[-1])
        await expect(badge).to_have_text("connected", timeout=30_000)
        await expect(page.locator('[data-conn="last_heartbeat_at"]')).not_to_have_text("never")
        await expect(page.locator('[data-conn="sidecars_live"]')).to_have_text("1")
        await shot(page, "wizard-3-verify")
        await page.get_by_role("link", name="Next: agent endpoint").click()

        # Step 4: a dead endpoint gives the reason inline; the demo agent gives a latency.
        url_box = page.get_by_label("Endpoint URL")
        await url_box.fill(f"http://127.0.0.1:{free_port()}")
        await page.get_by_role("button", name="Save and validate").click()
        result = page.locator("[data-validate-result]")
        await expect(result).to_contain_text("Not reachable", timeout=30_000)
        await expect(result).to_contain_text(re.compile("refused", re.I))
        agent_env = clean_env(HTTP_PROXY=f"http://127.0.0.1:{proxy_port}")
        procs.append(await start_process(COGUMI_BIN, "demo-agent", "--listen",
                     f"127.0.0.1:{agent_port}", env=agent_env, cwd=tmp_path, name="agent"))  # fmt: skip
        await wait_port(agent_port, procs[-1])
        await url_box.fill(f"http://127.0.0.1:{agent_port}")
        await page.get_by_role("button", name="Save and validate").click()
        await expect(result).to_contain_text(re.compile(r"Reachable — answered in \d+ ms"))
        await shot(page, "wizard-4-endpoint")
        await page.get_by_role("link", name="Next: first campaign").click()

        # Step 5: start; the run page fills live over SSE.
        await page.get_by_role("button", name="Start campaign").click()
        await expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))
        feed = page.locator("[data-feed] > li")
        await expect(page.locator("[data-live]")).to_be_visible()
        await expect(feed.first).to_be_visible(timeout=TIMEOUT)  # arrived without a reload
        await run_until(page, "completed")
    finally:
        for proc in reversed(procs):
            await proc.stop()

    run_url = page.url
    confirmed = page.locator("[data-feed] > li.kind-confirmed")
    await expect(confirmed.first).to_be_visible()
    await expect(page.locator("[data-risk-num]")).not_to_have_text("—")
    await expect(page.locator("[data-chat] > li").first).to_be_visible()
    await check_proof_and_jump(page)
    await shot(page, "run-proof-drawer")
    await page.get_by_role("button", name="Close proof").click()
    await check_replay(page)
    await check_network_tab(page)
    await triage_first_finding(page, run_url)
    await shot(page, "run-page")
    await main_page_shots(page, shot, project_id)


async def check_proof_and_jump(page: Page) -> None:
    step = page.locator("[data-feed] > li.kind-confirmed").first
    await step.get_by_role("button", name=re.compile("^Proof for")).click()
    drawer = page.locator("[data-drawer]")
    await expect(drawer).to_be_visible()
    await expect(page.get_by_role("button", name="Close proof")).to_be_focused()
    cards = drawer.locator(".proof-card")
    assert await cards.count() >= 2
    await expect(drawer).to_contain_text("Agent reply")
    scrubber = page.locator("[data-scrubber]")
    maximum = int(await scrubber.get_attribute("max") or 0)
    reply = drawer.locator(".proof-card", has_text="Agent reply").first
    seq = int(re.search(r"#(\d+)", await reply.inner_text()).group(1))  # type: ignore[union-attr]
    await reply.get_by_role("button", name=re.compile("^Jump")).click()
    await expect(scrubber).to_have_value(str(seq))
    assert seq < maximum
    await expect(page.get_by_role("tab", name=re.compile("Conversation"))).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(page.locator(f'[data-chat] > li.jumped[data-seq="{seq}"]')).to_be_visible()
    # later messages are hidden while the timeline sits earlier
    assert await page.locator(f'[data-chat] > li[data-seq="{maximum}"]').count() == 0


async def check_replay(page: Page) -> None:
    scrubber = page.locator("[data-scrubber]")
    await scrubber.fill("0")  # rewind
    await page.get_by_label("Replay speed").select_option("16")
    play = page.get_by_role("button", name=re.compile("Replay"))
    await play.click()
    await expect(page.locator("[data-play]")).to_have_attribute("aria-pressed", "true")
    await expect(scrubber).not_to_have_value("0")
    first = int(await scrubber.input_value())
    await page.wait_for_timeout(500)
    assert int(await scrubber.input_value()) > first  # it keeps playing
    await page.locator("[data-play]").click()  # pause
    await expect(page.locator("[data-play]")).to_have_attribute("aria-pressed", "false")
    paused = await scrubber.input_value()
    await page.wait_for_timeout(300)
    assert await scrubber.input_value() == paused
    await page.get_by_role("button", name="Jump to latest").click()
    await expect(scrubber).to_have_value(await scrubber.get_attribute("max") or "")


async def check_network_tab(page: Page) -> None:
    await page.get_by_role("tab", name=re.compile("Network proof")).click()
    cards = page.locator("[data-net] > li")
    await expect(cards.first).to_be_visible()
    total = await cards.count()
    sink = page.locator("[data-net-filter='attacker_sink']")
    if await sink.count():
        await sink.click()
        await expect(sink).to_have_attribute("aria-pressed", "true")
        assert await cards.count() <= total
        await expect(cards.first).to_contain_text("Attacker sink")
        await page.locator("[data-net-filter='']").click()


async def triage_first_finding(page: Page, run_url: str) -> None:
    await page.get_by_role("tab", name=re.compile("Findings")).click()
    card = page.locator("[data-findings] > li").first
    await expect(card).to_be_visible()
    form = card.locator("form[data-triage]")
    await form.get_by_label("Status").select_option("accepted")
    await form.get_by_label("Owner").fill("sec-team@example.com")
    await form.get_by_label("ETA").fill("2030-01-31")
    await form.get_by_label("Why it works").fill("The agent trusts <b>authority</b> claims.")
    await form.get_by_label("Verification step").fill("Re-run S3 and expect a refusal.")
    await form.get_by_role("button", name="Save triage").click()
    await expect(page.locator("#toast")).to_have_text("Triage saved")
    await page.goto(run_url)
    await page.get_by_role("tab", name=re.compile("Findings")).click()
    form = page.locator("[data-findings] > li").first.locator("form[data-triage]")
    await expect(form.get_by_label("Status")).to_have_value("accepted")
    await expect(form.get_by_label("Owner")).to_have_value("sec-team@example.com")
    await expect(form.get_by_label("Why it works")).to_have_value(
        "The agent trusts <b>authority</b> claims."
    )


async def main_page_shots(page: Page, shot: Shot, project_id: str) -> None:
    for path, name in (("/", "dashboard"), ("/projects", "projects"),
                       (f"/projects/{project_id}", "project-overview"),
                       (f"/projects/{project_id}/settings", "project-settings"),
                       ("/org", "org-settings")):  # fmt: skip
        response = await page.goto(path)
        assert response is not None and response.status == 200
        await shot(page, name)
    await page.goto("/")
    # the dashboard counts what the run found, and links into it
    await expect(page.locator(".sev-tile .count").first).to_be_visible()
    await expect(page.locator(".queue li").first).to_be_visible()
    await expect(page.locator(".heat tbody tr").first).to_be_visible()
    await expect(page.locator(".trend-svg")).to_be_visible()
