"""The browser fixtures of tests/web (real `cogumi serve`, Debian's chromium)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.factories import PASSWORD
from tests.web.conftest import browser, context, page, server

__all__ = ["browser", "context", "page", "server"]


@pytest.fixture
async def browser_api_key(server: str) -> str:
    """An OWNER API key of a fresh org on the real server (made outside the browser)."""
    async with httpx.AsyncClient(base_url=server, trust_env=False) as client:
        email = f"key-{uuid.uuid4().hex[:8]}@example.com"
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 201
        client.headers["X-CSRF-Token"] = client.cookies["cogumi_csrf"]
        key = await client.post("/api/api-keys", json={"name": "docs", "role": "OWNER"})
        assert key.status_code == 201, key.text
        return str(key.json()["key"])
