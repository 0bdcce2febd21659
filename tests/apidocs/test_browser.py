"""/api/docs in a real browser, with every request outside the server refused.

Swagger UI renders the API from the packaged assets; a signed-in user's
write goes through (the CSRF header is added from the cookie), and an API
key entered with Authorize is used for requests.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Route, expect

from tests.factories import PASSWORD

CREATE_OP = "#operations-webhooks-create_webhook_api_webhooks_post"
LIST_OP = "#operations-webhooks-list_webhooks_api_webhooks_get"


async def offline(page: Page, server: str) -> list[str]:
    """Refuse (and remember) every request that is not to the server itself."""
    outside: list[str] = []
    origin = urlsplit(server).netloc

    async def gate(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", gate)
    return outside


async def execute(page: Page, op: str, body: dict[str, object] | None = None) -> str:
    """Open an operation, try it out, execute it; the status code shown."""
    block = page.locator(op)
    await block.locator(".opblock-summary").first.click()
    await block.locator("button.try-out__btn").click()
    if body is not None:
        await block.locator("textarea.body-param__text").fill(json.dumps(body))
    await block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    await expect(status).to_be_visible(timeout=15_000)
    return (await status.inner_text()).split()[0]  # "401 Undocumented" -> "401"


async def test_signed_in_user_creates_a_webhook_from_the_docs(
    context: BrowserContext, page: Page, server: str
) -> None:
    signup = await context.request.post(
        "/api/auth/register",
        data={"email": f"docs-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
    )
    assert signup.status == 201
    outside = await offline(page, server)
    await page.goto("/api/docs")
    await expect(page.locator(CREATE_OP)).to_be_visible(timeout=15_000)
    body = {"name": "from docs", "url": "http://127.0.0.1:9/hook", "events": ["run.completed"]}
    assert await execute(page, CREATE_OP, body) == "201"
    listed = await context.request.get("/api/webhooks")
    assert [h["name"] for h in await listed.json()] == ["from docs"]
    assert outside == []


async def test_api_key_from_the_authorize_button(
    browser_api_key: str, page: Page, server: str
) -> None:
    outside = await offline(page, server)
    await page.goto("/api/docs")
    await expect(page.locator(LIST_OP)).to_be_visible(timeout=15_000)
    assert await execute(page, LIST_OP) == "401"  # no cookie, no key yet
    await page.locator("button.authorize").first.click()
    dialog = page.locator(".modal-ux")
    await dialog.locator("input").first.fill(browser_api_key)
    await dialog.locator("button.authorize").click()
    await dialog.locator("button.btn-done").click()
    await page.locator(f"{LIST_OP} button.btn-clear").click()
    await page.locator(f"{LIST_OP} button.execute").click()
    status = page.locator(f"{LIST_OP} .live-responses-table .response .response-col_status")
    await expect(status.first).to_have_text("200", timeout=15_000)
    await expect(
        page.locator(f"{LIST_OP} .live-responses-table tr.response pre").first
    ).to_contain_text("[]")
    assert outside == []
