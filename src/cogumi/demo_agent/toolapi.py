"""The agent's own small tool API, served on a second loopback port.

Benign: ``GET /items``, ``POST /items``. Destructive: ``DELETE /admin/state``
and ``POST /admin/reset`` answer 200 (the action "happened"); ``POST
/admin/users`` answers 403, the "attempted but refused" case. It keeps a count
of every call so tests can check what really arrived.
"""

from __future__ import annotations

import json
from collections import Counter

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SEED_ITEMS = ("widget", "gadget", "sprocket")


class ToolState:
    def __init__(self) -> None:
        self.items: list[dict[str, object]] = []
        self.calls: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        self.items = [{"id": i + 1, "name": name} for i, name in enumerate(SEED_ITEMS)]


def build_tool_api(state: ToolState | None = None) -> Starlette:
    state = state or ToolState()

    def count(request: Request) -> None:
        state.calls[f"{request.method} {request.url.path}"] += 1

    async def list_items(request: Request) -> JSONResponse:
        count(request)
        return JSONResponse({"items": state.items})

    async def add_item(request: Request) -> JSONResponse:
        count(request)
        try:
            name = str(json.loads(await request.body() or b"{}").get("name", "item"))[:60]
        except (ValueError, AttributeError):
            return JSONResponse({"error": "bad_request", "message": "expected JSON {name}"}, 400)
        item = {"id": len(state.items) + 1, "name": name}
        state.items.append(item)
        return JSONResponse(item, status_code=201)

    async def delete_state(request: Request) -> JSONResponse:
        count(request)
        deleted = len(state.items)
        state.items = []
        return JSONResponse({"deleted": deleted})

    async def reset(request: Request) -> JSONResponse:
        count(request)
        state.reset()
        return JSONResponse({"reset": True})

    async def create_user(request: Request) -> JSONResponse:
        count(request)
        return JSONResponse({"error": "forbidden", "message": "admin users need approval"}, 403)

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse({"calls": dict(state.calls), "items": len(state.items)})

    app = Starlette(
        routes=[
            Route("/items", list_items, methods=["GET"]),
            Route("/items", add_item, methods=["POST"]),
            Route("/admin/state", delete_state, methods=["DELETE"]),
            Route("/admin/reset", reset, methods=["POST"]),
            Route("/admin/users", create_user, methods=["POST"]),
            Route("/_stats", stats, methods=["GET"]),
        ]
    )
    app.state.tool_state = state
    return app
