"""Background tasks that are never garbage-collected mid-flight.

``asyncio.create_task`` keeps only a weak reference; :func:`spawn` keeps a
strong one until the task ends (ruff bans the bare call elsewhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    if name is None:  # without the name-setting step: the sidecar spawns one per tunnel
        task = asyncio.get_running_loop().create_task(coro)
    else:
        task = asyncio.create_task(coro, name=name)  # noqa: TID251 - the one allowed place
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
