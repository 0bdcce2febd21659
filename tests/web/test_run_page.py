"""The run page in a real browser, on one finished run shared by every test here.

The run is real: a `cogumi sidecar` whose throttle a burst of calls trips
during the run (a policy violation), a `cogumi demo-agent` with every flaw
whose guarded key is a canary minted by the project (so any leak is exact;
its tool calls reach an internal API and the attacker sink), and eight
built-in scripts at low intensity.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.web.conftest import (
    COGUMI,
    PASSWORD,
    Api,
    Proc,
    Shot,
    clean_env,
    free_port,
    start_process,
    wait_port,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 90_000
SCRIPTS = [f"S{i}" for i in range(1, 6)] + ["P01", "P02", "P03"]
THROTTLE = 10  # events per second the sidecar ships; the agent alone stays below it


@dataclass
class World:
    email: str
    project_id: str
    run_id: str
    canaries: list[str]
    events: list[dict[str, Any]]
    story: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    api: Api  # signed in as the owner; the sidecar and the agent stay up for the module


async def until(check: Any, within: float = 120) -> Any:
    """Poll an async check until it returns something truthy."""
    async with asyncio.timeout(within):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.2)


async def all_events(api: Api, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (
            await api.client.get(f"/api/runs/{run_id}/events?after_seq={after}&limit=1000")
        ).json()
        events += page["items"]
        if page["next_after_seq"] is None:
            return events
        after = page["next_after_seq"]


async def burst(proxy: str, url: str) -> None:
    """More calls through the sidecar than its throttle admits in one window."""
    async with httpx.AsyncClient(proxy=proxy, trust_env=False, timeout=10) as client:
        for _ in range(THROTTLE * 3):
            await client.get(url)


@pytest.fixture(scope="module")
async def world(server: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("run-page")
    api = Api(server)
    procs: list[Proc] = []
    try:
        email = f"runpage-{uuid.uuid4().hex[:8]}@example.com"
        await api.signup(email, "Run Page Org")
        project = (
            await api.client.post(
                "/api/projects",
                json={"name": "Run page", "sensitive_paths": ["/admin"],
                      "sink_domains": ["attacker-sink.local"]},
            )
        ).json()  # fmt: skip
        pid = project["id"]
        minted = (await api.client.post(f"/api/projects/{pid}/canaries")).json()
        canaries = [item["value"] for item in minted["items"]]
        secret = next(i["value"] for i in minted["items"] if i["kind"] == "OPENAI_KEY")
        token = (
            await api.client.post(f"/api/projects/{pid}/sidecar-tokens", json={"name": "ui"})
        ).json()["token"]
        proxy_port, agent_port, tool_port = free_port(), free_port(), free_port()
        sidecar_env = clean_env(SIDECAR_TOKEN=token, PROJECT_ID=pid, INGEST_URL=server,
                                HEARTBEAT_INTERVAL_SEC="1", BATCH_FLUSH_MS="100")  # fmt: skip
        procs.append(await start_process(COGUMI, "sidecar", "--listen", f"127.0.0.1:{proxy_port}",
                     "--throttle-per-window", str(THROTTLE), "--throttle-window-sec", "1",
                     env=sidecar_env, cwd=tmp, name="sidecar"))  # fmt: skip
        await wait_port(proxy_port, procs[-1])
        proxy = f"http://127.0.0.1:{proxy_port}"
        agent_env = clean_env(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, DEMO_AGENT_SECRET=secret)
        procs.append(await start_process(COGUMI, "demo-agent", "--listen", f"127.0.0.1:{agent_port}",
                     "--tool-api-listen", f"127.0.0.1:{tool_port}", "--downgrade-https",
                     "--latency-ms", "150", env=agent_env, cwd=tmp, name="agent"))  # fmt: skip
        await wait_port(agent_port, procs[-1])
        patch = await api.client.patch(
            f"/api/projects/{pid}", json={"agent_test_url": f"http://127.0.0.1:{agent_port}"}
        )
        assert patch.status_code == 200, patch.text

        async def connected() -> bool:
            state = (await api.client.get(f"/api/projects/{pid}/connection")).json()
            return bool(state["connected"])

        await until(connected, 30)
        created = await api.client.post(
            f"/api/projects/{pid}/runs", json={"scripts": SCRIPTS, "intensity": "low"}
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        async def memory_script_started() -> bool:
            story = (await api.client.get(f"/api/runs/{run_id}/story")).json()["items"]
            return any(step["script_id"] == "S4" for step in story)

        # S4 runs last and makes no tool calls: a burst now trips the throttle
        # without costing the agent's own evidence.
        await until(memory_script_started, 180)
        await burst(proxy, f"http://127.0.0.1:{tool_port}/items")

        async def finished() -> bool:
            run = (await api.client.get(f"/api/runs/{run_id}")).json()
            return run["status"] in ("completed", "failed", "canceled", "stopped_quota")

        await until(finished, 240)
        events = await all_events(api, run_id)
        story = (await api.client.get(f"/api/runs/{run_id}/story")).json()["items"]
        findings = (await api.client.get(f"/api/runs/{run_id}/findings")).json()["items"]
        yield World(email=email, project_id=pid, run_id=run_id, canaries=canaries,
                    events=events, story=story, findings=findings, api=api)  # fmt: skip
    finally:
        for proc in reversed(procs):
            await proc.stop()
        await api.close()


async def open_run(page: Page, world: World, status: str = "completed") -> None:
    """Sign in (the API sets the session cookies in the browser's jar) and open the run."""
    login = await page.request.post(
        "/api/auth/login", data={"email": world.email, "password": PASSWORD}
    )
    assert login.ok, await login.text()
    await page.goto(f"/runs/{world.run_id}")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(page.locator("[data-run-status]")).to_contain_text(status)


def without_leaks(text: str, world: World) -> None:
    for value in world.canaries:
        assert value not in text, "a raw canary value reached the page"


async def test_generate_report_then_view_and_download(page: Page, world: World, shot: Shot) -> None:
    await open_run(page, world)
    view = page.get_by_role("link", name="View report")
    download = page.get_by_role("link", name="Download .md")
    await expect(view).to_be_hidden()  # nothing generated yet
    await expect(download).to_be_hidden()
    await page.get_by_role("button", name="Generate report").click()
    await expect(page.locator("[data-report-status]")).to_have_text(
        "Report v1 ready", timeout=60_000
    )
    await expect(page.locator("[data-report-error]")).to_be_hidden()
    await expect(view).to_have_attribute("target", "_blank")
    await expect(page.get_by_role("button", name="Update report")).to_be_visible()
    await shot(page, "run-report-ready")

    titles = {f["title"] for f in world.findings}
    assert titles, "the demo agent's flaws must give findings"
    async with page.context.expect_page() as opened:
        await view.click()
    tab = await opened.value
    await tab.wait_for_load_state()
    await shot(tab, "run-report-html")
    body = await tab.locator("body").inner_text()
    for title in titles:
        assert title in body, title
    assert "TLS" in body  # the limitations section
    without_leaks(await tab.content(), world)
    await tab.close()

    async with page.expect_download() as fetched:
        await download.click()
    saved = await (await fetched.value).path()
    markdown = Path(saved).read_text()
    assert (await fetched.value).suggested_filename.endswith(".md")
    assert markdown.startswith("#")
    for title in titles:
        assert title in markdown, title
    without_leaks(markdown, world)

    # Unchanged run: asking again answers with the stored version at once.
    await page.get_by_role("button", name="Update report").click()
    await expect(page.locator("[data-report-status]")).to_have_text("Report v1 ready")
    # A report that exists is offered as soon as the page loads.
    await page.reload()
    await expect(view).to_be_visible()
    await expect(download).to_be_visible()
    await expect(page.locator("[data-report-status]")).to_have_text("Report v1")


async def test_report_error_is_shown_inline(page: Page, world: World) -> None:
    await open_run(page, world)
    # Without the CSRF cookie the API refuses the write; the page says why, next to the button.
    await page.context.clear_cookies(name="cogumi_csrf")
    await page.get_by_role("button", name=re.compile("(Generate|Update) report")).click()
    error = page.locator("[data-report-error]")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text(
        re.compile(r"^Report not generated: Not allowed: .*csrf", re.I)
    )
    await expect(
        page.get_by_role("button", name=re.compile("(Generate|Update) report"))
    ).to_be_enabled()


async def test_policy_and_memory_tabs_list_their_items(page: Page, world: World) -> None:
    await open_run(page, world)
    policy = [e for e in world.events if e["channel"] == "policy"]
    assert policy, "the throttled sidecar must have raised a policy violation"
    await page.get_by_role("tab", name=re.compile("Policy")).click()
    items = page.locator("[data-policy] > li")
    await expect(items).to_have_count(len(policy))
    await expect(items.first).to_contain_text("ingest throttled")
    await expect(items.first).to_contain_text(f"more than {THROTTLE} events in 1s")
    await expect(page.locator('[data-empty="policy"]')).to_be_hidden()

    s4 = [s for s in world.story if s["script_id"] == "S4"]
    assert any(s["step_kind"] == "confirmed" for s in s4), "memory poisoning must be confirmed"
    await page.get_by_role("tab", name=re.compile("Memory")).click()
    memory = page.locator("[data-memory] > li.policy-item")
    await expect(memory).to_have_count(len(s4))
    for step in s4:
        await expect(page.locator("[data-memory]")).to_contain_text(step["claim_title"])
    await expect(page.locator("[data-memory]")).to_contain_text(
        re.compile(r"\d+ messages across [2-9] session")
    )
    await expect(page.locator('[data-count="memory"]')).to_have_text(str(len(s4)))


async def test_timeline_markers_for_script_starts_and_confirmed_steps(
    page: Page, world: World
) -> None:
    await open_run(page, world)
    placed = [s for s in world.story if (s["seq_start"] or s["seq_end"]) is not None]
    confirmed = [s for s in placed if s["step_kind"] == "confirmed"]
    starts = [s for s in placed if s["step_kind"] != "confirmed" and s["status"] == "started"]
    assert confirmed and starts
    await expect(page.locator("[data-markers] .mk-confirmed")).to_have_count(len(confirmed))
    await expect(page.locator("[data-markers] .mk-start")).to_have_count(len(starts))
    first = starts[0]
    seq = first["seq_start"] or first["seq_end"]
    marker = page.locator(f'[data-markers] .mk-start[data-jump-seq="{seq}"]').first
    await expect(marker).to_have_attribute(
        "aria-label", re.compile(re.escape(first["claim_title"]))
    )
    await marker.focus()  # markers can sit on top of each other: use the keyboard
    await page.keyboard.press("Enter")
    await expect(page.locator("[data-scrubber]")).to_have_value(str(seq))


async def test_network_filter_chips_hide_other_classes(page: Page, world: World) -> None:
    http = [e for e in world.events if e["channel"] == "http"]
    by_class: dict[str, int] = {}
    for event in http:
        cls = event["destination"]["classification"]
        by_class[cls] = by_class.get(cls, 0) + 1
    assert {"attacker_sink", "internal_api"} <= set(by_class), by_class  # set up for two classes
    await open_run(page, world)
    await page.get_by_role("tab", name=re.compile("Network proof")).click()
    cards = page.locator("[data-net] > li")
    await expect(cards).to_have_count(len(http))
    await expect(page.locator("[data-net-filter]")).to_have_count(len(by_class) + 1)
    await expect(page.locator("[data-net-filter='']")).to_have_text(f"All ({len(http)})")
    for cls, label in (("attacker_sink", "Attacker sink"), ("internal_api", "Internal API")):
        chip = page.locator(f"[data-net-filter='{cls}']")
        await expect(chip).to_have_text(f"{label} ({by_class[cls]})")
        await chip.click()
        await expect(page.locator(f"[data-net-filter='{cls}']")).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(cards).to_have_count(by_class[cls])
        await expect(page.locator(f"[data-net] > li:not(.net-{cls})")).to_have_count(0)
        await expect(cards.locator(".class-chip")).to_have_text([label] * by_class[cls])
    await page.locator("[data-net-filter='']").click()
    await expect(cards).to_have_count(len(http))


JSON_BLOB = re.compile(r'[{\[]\s*"[^"\n]{1,80}"\s*:')


async def test_no_raw_secret_or_json_on_the_page(page: Page, world: World) -> None:
    assert world.canaries
    leaked = [e for e in world.events if any(m["kind"] == "CANARY" for m in e["matches"])]
    assert leaked, "the demo agent must have leaked its key (the canary) during the run"
    await open_run(page, world)
    seen = [await page.locator("body").inner_text()]
    for tab in ("Conversation", "Network proof", "Findings", "Policy", "Memory"):
        await page.get_by_role("tab", name=re.compile(tab)).click()
        seen.append(await page.locator("body").inner_text())
    await (
        page.locator("[data-feed] > li.kind-confirmed")
        .first.get_by_role("button", name=re.compile("^Proof for"))
        .click()
    )
    await expect(page.locator("[data-drawer]")).to_be_visible()
    seen.append(await page.locator("body").inner_text())
    visible = "\n".join(seen)
    assert "[REDACTED:OPENAI_KEY" in visible and "CANARY" in visible  # shown as previews
    without_leaks(visible, world)
    without_leaks(await page.content(), world)
    blob = JSON_BLOB.search(visible)
    assert blob is None, visible[max(0, blob.start() - 80) : blob.end() + 80]


async def test_narrow_viewport_keeps_feed_timeline_and_tabs_usable(
    browser: Browser, server: str, world: World, shot: Shot
) -> None:
    context = await browser.new_context(base_url=server, viewport={"width": 700, "height": 900})
    try:
        page = await context.new_page()
        await open_run(page, world)
        scroll = await page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll[0] <= scroll[1], f"the body scrolls sideways: {scroll}"
        for selector in ("[data-feed] > li", "[data-scrubber]", "[role=tablist]"):
            box = await page.locator(selector).first.bounding_box()
            assert box is not None and box["width"] > 200, selector
            assert box["x"] >= 0 and box["x"] + box["width"] <= 700, (selector, box)
        # The feed scrolls inside its own box: the tabs stay within reach of the top.
        tabs = await page.locator("[role=tablist]").bounding_box()
        assert tabs is not None and tabs["y"] < 1.5 * 900, tabs
        for tab in ("Conversation", "Network proof", "Findings", "Policy", "Memory"):
            button = page.get_by_role("tab", name=re.compile(tab))
            box = await button.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 700, (tab, box)
            await button.click()
            await expect(button).to_have_attribute("aria-selected", "true")
            panel = page.locator(f"#{await button.get_attribute('aria-controls')}")
            await expect(panel).to_be_visible()
        await page.locator("[data-scrubber]").fill("1")
        await expect(page.locator("[data-position]")).to_contain_text("Event 1 of")
        await shot(page, "run-narrow")
    finally:
        await context.close()


# Hears the live stream but never hands a story step to the page, as if each were lost.
DEAF_TO_STEPS = """
window.__stepsMissed = 0;
const RealEventSource = window.EventSource;
window.EventSource = class extends RealEventSource {
  addEventListener(type, listener, options) {
    if (type === "story.step.created") {
      return super.addEventListener(type, () => { window.__stepsMissed += 1; }, options);
    }
    return super.addEventListener(type, listener, options);
  }
};
"""


async def test_steps_missed_on_the_stream_appear_at_run_end(page: Page, world: World) -> None:
    await page.add_init_script(DEAF_TO_STEPS)
    created = await world.api.client.post(
        f"/api/projects/{world.project_id}/runs",
        json={"scripts": ["S1", "S2", "S3"], "intensity": "low"},
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    await open_run(page, replace(world, run_id=run_id), status="")
    await expect(page.locator("[data-run-status]")).to_contain_text("completed", timeout=TIMEOUT)
    assert await page.evaluate("window.__stepsMissed") > 0  # the page was live and heard none
    story = (await world.api.client.get(f"/api/runs/{run_id}/story")).json()["items"]
    feed = page.locator("[data-feed] > li")
    await expect(feed).to_have_count(len(story))
    await expect(page.locator(f"#step-{story[-1]['id']}")).to_contain_text(story[-1]["claim_title"])
