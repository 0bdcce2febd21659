"""Apps with their own settings for event tests (same database as the shared app)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from cogumi.app import create_app
from tests.conftest import make_settings

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def custom_app(database_url: str, tmp_path: Path) -> AppFactory:
    """``async with custom_app(ingest_rate_limit_per_min=10) as app``, started and stopped."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(make_settings(database_url, tmp_path, **overrides))
        async with application.router.lifespan_context(application):
            yield application

    return factory
