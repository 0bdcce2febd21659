"""``/metrics`` (Prometheus, outside ``/api``) and ``GET /api/health/ready``.

Readiness asks each dependency with a short timeout and answers 503 naming
the component that failed, so a load balancer stops sending traffic to a
process that cannot serve it; ``GET /api/health`` stays a liveness check.
Neither route opens the request's database transaction first: readiness
must answer even when the database is what is down.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from sqlalchemy import text

from cogumi.config import Settings
from cogumi.errors import Unauthenticated

CHECK_TIMEOUT_SEC = 2.0

metrics_router = APIRouter(include_in_schema=False)
ready_router = APIRouter(tags=["health"])


@metrics_router.get("/metrics")
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        expected = settings.metrics_token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), expected):
            raise Unauthenticated("send Authorization: Bearer <metrics token>")
    collected = request.app.state.metrics
    await collected.refresh(request.app.state.sessionmaker)
    return Response(collected.render(), media_type=CONTENT_TYPE_LATEST)


async def _timed(check: Awaitable[Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SEC):
            ok = bool(await check)
        detail = None if ok else "not answering"
    except Exception as exc:  # any failure is "not ready", with its reason
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
    result: dict[str, Any] = {
        "ok": ok,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if detail:
        result["detail"] = detail
    return result


async def _database(request: Request) -> bool:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True


async def _redis(url: str) -> bool:
    client: Redis = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def _true() -> bool:
    return True


@ready_router.get("/health/ready", responses={503: {"description": "A dependency is down."}})
async def ready(request: Request) -> JSONResponse:
    """Database, run queue and live bus, each ``{ok, latency_ms, detail?}``; 503 naming in
    ``down`` each one that failed."""
    settings: Settings = request.app.state.settings
    queue = _redis(settings.redis_url) if settings.redis_url else _true()
    components = {
        "database": await _timed(_database(request)),
        "queue": {**await _timed(queue), "kind": "redis" if settings.redis_url else "in-process"},
        "live_bus": {
            **await _timed(request.app.state.live_bus.ping()),
            "kind": "redis" if settings.redis_url else "in-process",
        },
    }
    down = [name for name, component in components.items() if not component["ok"]]
    body = {"ready": not down, "down": down, "components": components}
    return JSONResponse(body, status_code=503 if down else 200)
