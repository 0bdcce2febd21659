"""Fixtures for the sidecar: local ingest, origin and TLS origin servers, and a
factory for running sidecars (in-process, on ephemeral loopback ports)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.runner import Sidecar
from tests.sidecar.servers import PROJECT_ID, TOKEN, Ingest, Origin, Served, running, self_signed

SidecarFactory = Callable[..., contextlib.AbstractAsyncContextManager[Sidecar]]


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[Ingest, Served]]:
    app = Ingest()
    async with running(app) as served:
        yield app, served


@pytest.fixture
async def origin() -> AsyncIterator[tuple[Origin, Served]]:
    app = Origin()
    async with running(app) as served:
        yield app, served


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_origin(tls_files: tuple[str, str]) -> AsyncIterator[tuple[Origin, Served]]:
    app = Origin()
    async with running(app, ssl=tls_files) as served:
        yield app, served


@pytest.fixture
def make_sidecar(ingest: tuple[Ingest, Served]) -> SidecarFactory:
    _, served = ingest

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Sidecar]:
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "ingest_url": served.url,
            "token": TOKEN,
            "project_id": PROJECT_ID,
            "batch_flush_ms": 30,
            "heartbeat_interval": 0.2,
            "upstream_timeout": 5.0,
            "shutdown_timeout": 5.0,
        }
        values.update(overrides)
        sidecar = Sidecar(SidecarOptions(**values))
        await sidecar.start()
        try:
            yield sidecar
        finally:
            await sidecar.stop()

    return factory


def proxy_url(sidecar: Sidecar) -> str:
    assert sidecar.address is not None
    return f"http://127.0.0.1:{sidecar.address[1]}"


def shipped_text(ingest: Ingest) -> str:
    """Everything the ingest API received, as one string, to search for leaks."""
    return "\n".join(raw.decode() for raw in ingest.raw) + json.dumps(ingest.heartbeats)


def data_dir() -> Path:
    return Path(__file__).parent
