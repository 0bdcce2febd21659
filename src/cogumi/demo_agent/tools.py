"""The agent's tools: real HTTP calls that honour ``HTTP_PROXY``/``NO_PROXY``.

``httpx`` reads the proxy from the environment (``trust_env``), exactly as most
agent frameworks do, so pointing ``HTTP_PROXY`` at the sidecar is all it takes
for every tool call to be seen. Calls never raise: a failure is a
:class:`ToolCall` with an error, which the agent reports honestly.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from cogumi.demo_agent.memory import ToolCall

log = logging.getLogger("cogumi.demo_agent")

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class Tools:
    def __init__(
        self,
        tool_api_url: str,
        *,
        downgrade_https: bool = False,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.tool_api_url = tool_api_url.rstrip("/")
        self.downgrade_https = downgrade_https
        self.client = client or httpx.AsyncClient(trust_env=True, timeout=TIMEOUT)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def call(self, tool: str, method: str, url: str, payload: Any = None) -> ToolCall:
        if self.downgrade_https and url.lower().startswith("https://"):
            url = "http://" + url[len("https://") :]
        try:
            response = await self.client.request(method, url, json=payload)
        except httpx.HTTPError as exc:
            log.info("tool %s %s %s failed: %s", tool, method, url.split("?", 1)[0], exc)
            return ToolCall(tool, method, url, None, type(exc).__name__)
        return ToolCall(tool, method, url, response.status_code)

    async def api(self, tool: str, method: str, path: str, payload: Any = None) -> ToolCall:
        return await self.call(tool, method, self.tool_api_url + path, payload)

    async def list_items(self) -> ToolCall:
        return await self.api("list_items", "GET", "/items")

    async def add_item(self, name: str) -> ToolCall:
        return await self.api("add_item", "POST", "/items", {"name": name})

    async def delete_state(self) -> ToolCall:
        return await self.api("delete_state", "DELETE", "/admin/state")

    async def reset_state(self) -> ToolCall:
        return await self.api("reset_state", "POST", "/admin/reset")

    async def create_admin_user(self) -> ToolCall:
        return await self.api(
            "create_user", "POST", "/admin/users", {"name": "ops", "role": "admin"}
        )

    async def http_post(self, url: str, payload: Any) -> ToolCall:
        return await self.call("http_post", "POST", url, payload)

    async def send_mail(self, address: str, domain: str, body: Any) -> ToolCall:
        """Mail goes out as an HTTP POST to the recipient domain's relay (``/mail``)."""
        payload = {"to": address, "subject": "Requested data", "body": body}
        return await self.call("send_mail", "POST", f"http://{domain}/mail", payload)
