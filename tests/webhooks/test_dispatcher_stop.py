"""Stopping the webhook dispatcher is bounded, whatever its loop does with a
cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from cogumi.db.engine import make_sessionmaker
from cogumi.webhooks.dispatch import Dispatcher
from tests.conftest import make_settings


async def test_a_loop_that_swallows_its_cancellation_does_not_hold_the_stop(
    tmp_path: Path,
) -> None:
    """A library on the loop's path catching CancelledError once (and going on) held
    ``close`` forever; the dispatcher cancels again until the loop ends."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
    engine = create_async_engine(url)
    settings = make_settings(url, tmp_path / "data", webhook_timeout_sec=0.1)
    dispatcher = Dispatcher(
        settings=settings, sessionmaker=make_sessionmaker(engine), engine=engine
    )
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise

    dispatcher._task = asyncio.ensure_future(stubborn())
    closing = asyncio.ensure_future(dispatcher.close())
    try:
        # Waited for without cancelling it: a cancellation from here would end the loop.
        await asyncio.wait({closing}, timeout=5)
        assert closing.done(), "close() still waiting for a loop that swallowed a cancel"
        assert dispatcher._task.done() and cancels == 2
    finally:
        closing.cancel()
        dispatcher._task.cancel()
        await engine.dispose()
