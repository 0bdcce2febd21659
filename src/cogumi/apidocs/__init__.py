"""Interactive API docs at ``/api/docs``, served entirely from the package.

Swagger UI's built assets are vendored in ``static/`` (Apache-2.0, see
``static/LICENSE-swagger-ui.txt`` and ``NOTICE-swagger-ui.txt``), so the page
works on a machine with no internet access and loads nothing from a CDN.
Auth from the page: the browser's session cookie (a small request interceptor
adds the CSRF header to writes) or an API key through the Authorize button,
declared in the OpenAPI document as an HTTP bearer scheme.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from cogumi.apidocs.openapi import document_errors

STATIC_DIR = Path(__file__).parent / "static"
DOCS_PATH = "/api/docs"
ASSETS_PATH = "/api/docs/assets"
SCHEME = "ApiKey"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
API_KEY_HELP = (
    "An org API key (`cgk_…`), sent as `Authorization: Bearer <key>`. Without one, "
    "requests from this page use your signed-in session."
)


def page(openapi_url: str, title: str) -> str:
    """The docs page: no inline script, every asset from ``ASSETS_PATH``."""
    title = escape(title)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="stylesheet" href="{ASSETS_PATH}/cogumi-api-docs.css">
</head>
<body data-openapi-url="{escape(openapi_url)}">
<header class="cogumi-docs-header">
<strong>{title} API</strong>
<p>Signed in to the web UI? Requests below use your session. Otherwise press
<em>Authorize</em> and paste an API key. <a href="/">Back to the app</a></p>
</header>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_PATH}/cogumi-api-docs.js"></script>
</body>
</html>
"""


def _with_auth_scheme(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, plus the API-key scheme the Authorize button offers and
    the error answers the API really sends (:mod:`cogumi.apidocs.openapi`)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": API_KEY_HELP,
        }
        # Optional: either the key or the session cookie (the empty requirement).
        schema["security"] = [{SCHEME: []}, {}]
        app.openapi_schema = document_errors(schema)
    return app.openapi_schema


def mount_api_docs(app: FastAPI) -> None:
    """``/api/docs`` and its assets; called once by ``create_app``."""
    openapi_url = app.openapi_url or "/api/openapi.json"

    def openapi() -> dict[str, Any]:
        return _with_auth_scheme(app)

    app.openapi = openapi  # type: ignore[method-assign]

    async def docs() -> HTMLResponse:
        response = HTMLResponse(page(openapi_url, app.title))
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        return response

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="api-docs-assets")
