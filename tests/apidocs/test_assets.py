"""/api/docs is served entirely from the package: every asset local, no external URL."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

from cogumi.apidocs import STATIC_DIR

EXTERNAL = re.compile(r"(?i)\b(?:https?:)?//[a-z0-9.-]+")


class Refs(HTMLParser):
    """Every URL-valued attribute of the page, and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "data-openapi-url", "action", "srcset", "poster"):
            if values.get(name):
                self.urls.append((tag, str(values[name])))
        self._in_script_without_src = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


async def test_page_and_every_asset_are_local(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    refs = Refs()
    refs.feed(response.text)
    assert refs.inline_scripts == 0
    tags = [tag for tag, _ in refs.urls]
    assert tags.count("script") == 2 and tags.count("link") >= 2
    assets = [url for tag, url in refs.urls if tag in ("script", "link")]
    for url in assets:
        assert url.startswith("/api/docs/assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
        name = url.rsplit("/", 1)[1]
        assert asset.content == (STATIC_DIR / name).read_bytes()
    for _tag, url in refs.urls:
        if url != "/":
            assert not EXTERNAL.search(url), url
    assert not EXTERNAL.search(response.text)
    openapi_url = dict((t, u) for t, u in refs.urls if t == "body")["body"]
    assert (await client.get(openapi_url)).status_code == 200


async def test_our_script_and_styles_load_nothing_from_outside(client: httpx.AsyncClient) -> None:
    script = (await client.get("/api/docs/assets/cogumi-api-docs.js")).text
    assert "validatorUrl: null" in script  # Swagger UI would otherwise call an online validator
    assert not EXTERNAL.search(script)
    for name in ("swagger-ui.css", "cogumi-api-docs.css"):
        css = (await client.get(f"/api/docs/assets/{name}")).text
        for ref in re.findall(r"url\(\s*['\"]?([^'\")]+)", css):
            assert ref.startswith("data:"), ref
        assert "@import" not in css and "sourceMappingURL" not in css


async def test_license_is_shipped_with_the_vendored_assets() -> None:
    license_text = (STATIC_DIR / "LICENSE-swagger-ui.txt").read_text()
    assert "Apache License" in license_text
    assert "SmartBear" in (STATIC_DIR / "NOTICE-swagger-ui.txt").read_text()


async def test_unknown_asset_is_404_and_no_path_escape(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/docs/assets/nope.js")).status_code == 404
    escaped = await client.get("/api/docs/assets/..%2F__init__.py")
    assert escaped.status_code == 404


async def test_openapi_offers_api_key_auth_and_documents_webhooks(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert {"ApiKey": []} in schema["security"] and {} in schema["security"]
    assert "/api/webhooks" in schema["paths"]
    assert "/api/webhooks/{webhook_id}/deliveries" in schema["paths"]
    assert "/api/docs" not in schema["paths"]
