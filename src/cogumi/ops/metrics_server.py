"""``/metrics`` for ``cogumi worker``, on its own ``--metrics-listen HOST:PORT``.

A worker serves no API, so it gets a minimal app with the same ``/metrics``
route as ``serve`` (same token rule, same queue-depth read at scrape time),
run by uvicorn inside the worker's event loop. The socket is bound here, so
a taken port fails the worker's start with a clear message; uvicorn's own
signal handling is off, because the worker handles SIGTERM itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.errors import install_error_handlers, install_unavailable_handler
from cogumi.ops.metrics import Metrics
from cogumi.ops.routes import metrics_router
from cogumi.tasks import spawn


class ListenError(OSError):
    """The metrics address cannot be listened on (taken, not local...)."""


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) -> (host, port); ValueError naming the problem."""
    host, sep, port_text = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9100), got {value!r}")
    return host, int(port_text)


def metrics_app(
    *, settings: Settings, metrics: Metrics, sessionmaker: async_sessionmaker[AsyncSession]
) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sessionmaker = sessionmaker
    install_error_handlers(app)
    install_unavailable_handler(app)
    app.include_router(metrics_router)
    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the worker process owns SIGTERM/SIGINT


class MetricsServer:
    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.sock.listen(128)
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = spawn(self.server.serve(sockets=[self.sock]), name="worker-metrics")
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.sock.close()


async def start_metrics_server(
    listen: str,
    *,
    settings: Settings,
    metrics: Metrics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> MetricsServer:
    host, port = parse_listen(listen)
    app = metrics_app(settings=settings, metrics=metrics, sessionmaker=sessionmaker)
    server = MetricsServer(app, host=host, port=port)
    await server.start()
    return server
