"""A stand-in campaign executor with the engine's signature, for the worker tests.

Each "script" is one step: check ``should_stop()``, record a script result and
a story step in its own transaction, sleep. In-process tests configure a
:class:`FakeExecutor` instance; ``cogumi worker --executor
tests.runs.fake_executor:from_env`` reads its pace from the environment.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.db.engine import transaction
from cogumi.events.bus import LiveBus
from cogumi.runs import service
from cogumi.runs.models import Run


class FakeExecutor:
    def __init__(self, *, steps: int = 3, step_sec: float = 0.02) -> None:
        self.steps = steps
        self.step_sec = step_sec
        self.error: Exception | None = None
        self.ignore_stop = False
        self.halted = False  # set by the fixture's teardown: end at the next step
        self.calls: list[uuid.UUID] = []
        self.stopped_after: dict[uuid.UUID, int] = {}

    async def __call__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        bus: LiveBus,
        run_id: uuid.UUID,
        should_stop: Callable[[], Awaitable[bool]],
    ) -> None:
        self.calls.append(run_id)
        for index in range(self.steps):
            if self.halted:
                return
            if self.ignore_stop and index == 1:
                await asyncio.sleep(3600)  # hangs, never asking should_stop()
            if not self.ignore_stop and await should_stop():
                self.stopped_after[run_id] = index
                return
            await record_step(sessionmaker, bus=bus, run_id=run_id, index=index)
            if self.error is not None and index == 0:
                raise self.error
            await asyncio.sleep(self.step_sec)


async def record_step(
    sessionmaker: async_sessionmaker[AsyncSession], *, bus: LiveBus, run_id: uuid.UUID, index: int
) -> None:
    async with transaction(sessionmaker) as session:
        run = await session.get(Run, run_id)
        assert run is not None
        script_id = f"P{index + 1:02d}"
        await service.record_script_result(
            session,
            run=run,
            script_id=script_id,
            technique_id="T-fake",
            result="pass",
            score=0,
            severity="info",
            confidence=0.9,
            summary=f"step {index} resisted",
        )
        await service.add_story_step(
            session,
            bus=bus,
            run=run,
            step_kind="info",
            claim_title=f"Script {script_id} finished",
            script_id=script_id,
        )


async def from_env(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    bus: LiveBus,
    run_id: uuid.UUID,
    should_stop: Callable[[], Awaitable[bool]],
) -> None:
    """The subprocess flavour: pace from COGUMI_TEST_FAKE_STEPS / COGUMI_TEST_FAKE_STEP_SEC."""
    fake = FakeExecutor(
        steps=int(os.environ.get("COGUMI_TEST_FAKE_STEPS", "3")),
        step_sec=float(os.environ.get("COGUMI_TEST_FAKE_STEP_SEC", "0.02")),
    )
    await fake(
        sessionmaker=sessionmaker,
        settings=settings,
        bus=bus,
        run_id=run_id,
        should_stop=should_stop,
    )
