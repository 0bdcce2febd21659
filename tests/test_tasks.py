"""Background tasks at shutdown: a cancellation swallowed on the way up (a library
catching CancelledError) must not hold a process's shutdown forever."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from cogumi import tasks
from cogumi.runs.worker import RunWorker


async def test_a_task_that_swallows_its_cancellation_once_is_cancelled_again() -> None:
    swallowed = 0

    async def forgetful() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a library that catches it and goes on

    task = tasks.spawn(forgetful())
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(tasks.cancel_and_wait([task], within=10), 5)
    assert task.cancelled() and swallowed == 1
    assert time.monotonic() - started < 2


async def test_a_task_that_never_ends_is_left_behind_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = tasks.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="cogumi.tasks"):
        await asyncio.wait_for(tasks.cancel_and_wait([task], within=0.3), 5)
    assert not task.done()
    assert "left behind: stubborn" in caplog.text
    stop.set()
    task.cancel()
    await asyncio.wait_for(task, 5)


async def test_the_reaper_stops_when_a_pass_swallows_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen in CI: the reaper was cancelled inside a pass, something on the way caught
    the cancellation, and the reaper went back to sleep while shutdown awaited it."""
    in_pass = asyncio.Event()

    async def reap_once(self: Any) -> None:
        in_pass.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # swallowed

    monkeypatch.setattr(RunWorker, "reap_once", reap_once)
    worker = RunWorker.__new__(RunWorker)
    worker.settings = type("S", (), {"run_reaper_interval_sec": 3600.0})()  # type: ignore[assignment]
    task = tasks.spawn(worker.reap_forever())
    await in_pass.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
