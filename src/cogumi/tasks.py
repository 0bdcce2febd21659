"""Background tasks that are never garbage-collected mid-flight.

``asyncio.create_task`` keeps only a weak reference; :func:`spawn` keeps a
strong one until the task ends (ruff bans the bare call elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
RECANCEL_EVERY_SEC = 0.5

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    if name is None:  # without the name-setting step: the sidecar spawns one per tunnel
        task = asyncio.get_running_loop().create_task(coro)
    else:
        task = asyncio.create_task(coro, name=name)  # noqa: TID251 - the one allowed place
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, within: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they end, at most ``within`` seconds.

    A task whose cancellation is swallowed on its way up (a library catching
    ``CancelledError`` and going on) would hold a plain ``await task`` forever, and
    with it the shutdown of the whole process. So a task still running is cancelled
    again every RECANCEL_EVERY_SEC, and one still running at the end is left behind
    with a warning. Their results and errors are dropped, as a shutdown wants."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    every = list(tasks)
    pending = {task for task in every if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            names = ", ".join(sorted(task.get_name() for task in pending))
            log.warning("tasks still running after cancellation, left behind: %s", names)
            return
        _, pending = await asyncio.wait(pending, timeout=min(left, RECANCEL_EVERY_SEC))
    for task in every:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit


async def close_in_turn(*steps: Callable[[], Awaitable[Any]]) -> None:
    """Await each of a shutdown's ``steps`` in order; one that fails is logged and the
    rest still run (a failed step must not leave the later ones' connections, child
    processes and sockets open)."""
    for step in steps:
        try:
            await step()
        except Exception:
            log.exception("shutdown step %s failed; going on with the rest",
                          getattr(step, "__qualname__", repr(step)))  # fmt: skip
