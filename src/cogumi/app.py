"""ASGI app factory: settings, engine, routers, middleware, lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from cogumi import __version__
from cogumi.config import Settings
from cogumi.db.engine import make_engine, make_sessionmaker
from cogumi.errors import (
    install_error_handlers,
    install_integrity_handler,
    install_unavailable_handler,
)
from cogumi.events.bus import make_bus
from cogumi.middleware import BodyLimitMiddleware
from cogumi.ops.metrics import Metrics
from cogumi.ops.middleware import RequestContextMiddleware
from cogumi.ops.routes import metrics_router
from cogumi.runs.runtime import start_runtime
from cogumi.tasks import close_in_turn
from cogumi.tenancy.deps import get_principal
from cogumi.tenancy.ratelimit import make_rate_limiter
from cogumi.webhooks.dispatch import start_dispatcher


def api_routers() -> list[APIRouter]:
    """Every JSON API router, in one explicit list (mounted under ``/api``)."""
    from cogumi.engine import routes as engine_routes
    from cogumi.events import routes as events_routes
    from cogumi.findings import routes as findings_routes
    from cogumi.health import routes as health_routes
    from cogumi.projects import routes as projects_routes
    from cogumi.projects import routes_canaries
    from cogumi.quotas import routes as quotas_routes
    from cogumi.reports import routes as reports_routes
    from cogumi.runs import routes as runs_routes
    from cogumi.saved_prompts import routes as saved_prompts_routes
    from cogumi.tenancy import oidc as oidc_routes
    from cogumi.tenancy import routes as tenancy_routes
    from cogumi.webhooks import routes as webhooks_routes

    return [
        health_routes.router,
        *tenancy_routes.routers,
        oidc_routes.router,
        projects_routes.router,
        routes_canaries.router,
        events_routes.router,
        engine_routes.router,
        runs_routes.router,
        findings_routes.router,
        reports_routes.router,
        saved_prompts_routes.router,
        quotas_routes.router,
        webhooks_routes.router,
    ]


def open_api_routers() -> list[APIRouter]:
    """API routers mounted under ``/api`` *without* principal resolution: readiness must
    answer while the database is down, and the cron hook (its own secret) and event
    ingest (the sidecar token) open their own short transactions (no request
    transaction holding SQLite's write lock)."""
    from cogumi.events.routes import ingest_router
    from cogumi.ops.routes import ready_router
    from cogumi.quotas.routes import cron_router

    return [ready_router, cron_router, ingest_router]


def api_route_table() -> list[tuple[str, str]]:
    """Every (method, path) the JSON API serves, as mounted (the isolation test's input)."""
    table: list[tuple[str, str]] = []
    for router in [*api_routers(), *open_api_routers()]:
        for route in router.routes:
            if isinstance(route, APIRoute):
                methods = sorted(route.methods or ())
                table.extend((method, "/api" + route.path) for method in methods)
    return table


def create_app_from_environment() -> FastAPI:
    """The app of one process of ``cogumi serve --workers N``: settings and logging
    from the environment, as the parent process saw them."""
    from cogumi.ops.logging import configure_logging

    settings = Settings()
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    app = create_app(settings)
    settle_heap()
    return app


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a server process, once its app is built.

    Modules, routes, schemas and mappers live as long as the process; frozen, they
    are no longer scanned by every full collection (on a busy ingest that scan cost
    about a third of the CPU). Requests make many short-lived objects that reference
    counting frees anyway, so the young generation is collected less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.effective_database_url, **settings.engine_options())
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.rate_limiter = make_rate_limiter(settings)
        app.state.live_bus = await make_bus(settings.redis_url, settings.redis_key_prefix)
        app.state.runs = await start_runtime(
            settings=settings, sessionmaker=app.state.sessionmaker, bus=app.state.live_bus
        )
        app.state.run_queue = app.state.runs.queue
        app.state.runs.worker.observers.append(app.state.metrics)
        app.state.webhooks = await start_dispatcher(
            settings=settings, sessionmaker=app.state.sessionmaker, engine=engine
        )
        try:
            yield
        finally:
            await close_in_turn(
                app.state.webhooks.close,
                app.state.runs.close,
                app.state.live_bus.close,
                app.state.rate_limiter.close,
                engine.dispose,
            )

    app = FastAPI(
        title="COGUMI AI Protect",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    install_integrity_handler(app)
    install_unavailable_handler(app)
    # The open routers come first: their paths overlap no other, and ingest, the
    # busiest route, is then matched in a few µs instead of after every other router
    # (~300 µs a request on a slow core with this FastAPI's included-router matching).
    for router in open_api_routers():
        app.include_router(router, prefix="/api")
    # Resolving the principal on every API request also enforces CSRF on every
    # cookie-authenticated write, including routes that do not need a user.
    for router in api_routers():
        app.include_router(router, prefix="/api", dependencies=[Depends(get_principal)])
    app.include_router(metrics_router)  # /metrics, outside /api
    from cogumi.web import mount_web

    mount_web(app)  # pages and /static, outside /api
    from cogumi.apidocs import mount_api_docs

    mount_api_docs(app)  # /api/docs: interactive docs from packaged assets (no CDN)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    # Outermost: the request id covers every log line, even a 413 or an error.
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app
