"""Fixtures of the runs tests: a fake executor plugged into the app's own worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from cogumi.runs.worker import RunWorker
from tests.runs.fake_executor import FakeExecutor


@pytest.fixture
async def fake(app: FastAPI) -> AsyncIterator[FakeExecutor]:
    """The app's worker runs campaigns with a :class:`FakeExecutor` during the test."""
    worker: RunWorker = app.state.runs.worker
    previous, previous_grace = worker.executor, worker.cap_grace_sec
    executor = FakeExecutor()
    worker.executor = executor
    try:
        yield executor
    finally:
        # Let this test's runs end before the next test (or the real engine) takes over.
        executor.halted = True
        for _ in range(200):
            if not worker._active:
                break
            await asyncio.sleep(0.02)
        worker.executor, worker.cap_grace_sec = previous, previous_grace


@pytest.fixture
def worker(app: FastAPI) -> RunWorker:
    run_worker: RunWorker = app.state.runs.worker
    return run_worker
