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


async def test_a_failed_shutdown_step_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def first() -> None:
        ran.append("first")

    async def broken() -> None:
        ran.append("broken")
        raise ConnectionError("database gone")

    async def last() -> None:
        ran.append("last")

    with caplog.at_level(logging.ERROR, logger="cogumi.tasks"):
        await tasks.close_in_turn(first, broken, last)
    assert ran == ["first", "broken", "last"]
    assert "shutdown step" in caplog.text and "broken" in caplog.text
    assert "database gone" in caplog.text


async def test_the_apps_shutdown_goes_on_past_a_step_that_fails(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A close that raises (webhooks here) must not leave the run queue, the live bus
    and the database engine (with its ingest writer process) open."""
    from sqlalchemy import event

    from cogumi.app import create_app
    from cogumi.db.migrate import upgrade
    from tests.conftest import _run_outside_loop, make_settings

    url = f"sqlite+aiosqlite:///{tmp_path}/app.db"
    _run_outside_loop(upgrade, url)
    app = create_app(make_settings(url, tmp_path / "data"))
    closed: list[str] = []
    with caplog.at_level(logging.ERROR, logger="cogumi.tasks"):
        async with app.router.lifespan_context(app):
            state = app.state

            real_close = state.webhooks.close

            async def failing_close() -> None:
                await real_close()  # stopped, then fails (else its loop outlives the test)
                raise RuntimeError("webhook dispatcher would not stop")

            def record(name: str, close: Any) -> Any:
                async def wrapped() -> None:
                    closed.append(name)
                    await close()

                return wrapped

            state.webhooks.close = failing_close
            state.runs.close = record("runs", state.runs.close)
            state.live_bus.close = record("live_bus", state.live_bus.close)
            state.rate_limiter.close = record("rate_limiter", state.rate_limiter.close)
            event.listen(state.engine.sync_engine, "engine_disposed",
                         lambda _engine: closed.append("engine"))  # fmt: skip
    assert closed == ["runs", "live_bus", "rate_limiter", "engine"]
    assert "webhook dispatcher would not stop" in caplog.text
