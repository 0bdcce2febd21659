"""Wiring the queue, the worker and the reaper into a process.

- ``serve`` (embedded): jobs execute in-process; the reaper runs.
- ``serve`` (scale-out): only sends jobs; the reaper still runs, so a run
  whose worker died is recovered even when every worker is gone.
- ``cogumi worker``: receives jobs from Redis, executes them, reaps; sends the
  webhook deliveries its runs cause as soon as they commit (its own
  dispatcher, see :mod:`cogumi.webhooks.dispatch`), and with
  ``worker_metrics_listen`` serves Prometheus ``/metrics``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.events.bus import LiveBus
from cogumi.runs.queue import RunQueue
from cogumi.runs.worker import Executor, RunWorker
from cogumi.tasks import cancel_and_wait, close_in_turn, spawn

log = logging.getLogger(__name__)


@dataclass
class RunsRuntime:
    queue: RunQueue
    worker: RunWorker
    tasks: list[asyncio.Task[None]]

    async def close(self) -> None:
        await cancel_and_wait(self.tasks)
        await close_in_turn(self.worker.shutdown, self.queue.shutdown)


async def start_runtime(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    bus: LiveBus,
    executor: Executor | None = None,
    listen: bool = False,
) -> RunsRuntime:
    """Start the queue (and, where this process executes runs, the worker) plus the reaper.

    ``listen`` makes this process a Redis consumer (``cogumi worker``); the
    embedded in-process queue always executes where it is sent.
    """
    queue = RunQueue.from_settings(settings)
    worker = RunWorker(
        sessionmaker=sessionmaker, settings=settings, bus=bus, queue=queue, executor=executor
    )
    if queue.in_process or listen:
        queue.register(worker.handle)
    await queue.startup()
    tasks = [spawn(worker.reap_forever(), name="run-reaper")]
    if settings.retention_interval_sec > 0:  # serve and worker alike; a DB lock serialises them
        from cogumi.quotas.retention import schedule

        tasks.append(
            spawn(schedule(sessionmaker=sessionmaker, settings=settings), name="retention")
        )
    if listen and not queue.in_process:
        tasks.append(spawn(queue.listen(), name="run-queue-listener"))
    return RunsRuntime(queue=queue, worker=worker, tasks=tasks)


def load_executor(spec: str) -> Executor:
    """``module:function`` -> the function (a custom campaign engine, or a test double)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"executor must look like 'package.module:function', not {spec!r}")
    executor: Executor = getattr(importlib.import_module(module_name), attr)
    return executor


async def run_worker_process(settings: Settings, *, executor: Executor | None = None) -> None:
    """``cogumi worker``: consume run jobs until SIGTERM/SIGINT, then hand runs back."""
    from cogumi.db.engine import make_engine, make_sessionmaker
    from cogumi.events.bus import make_bus
    from cogumi.ops.metrics import Metrics
    from cogumi.ops.metrics_server import MetricsServer, start_metrics_server
    from cogumi.webhooks.dispatch import start_dispatcher

    engine = make_engine(settings.effective_database_url, **settings.engine_options())
    sessionmaker = make_sessionmaker(engine)
    metrics = Metrics()
    server: MetricsServer | None = None
    if settings.worker_metrics_listen:  # first: a taken port fails the start at once
        server = await start_metrics_server(settings.worker_metrics_listen, settings=settings,
                                            metrics=metrics, sessionmaker=sessionmaker)  # fmt: skip
        log.info("worker metrics on http://%s/metrics", settings.worker_metrics_listen)
    bus = await make_bus(settings.redis_url, settings.redis_key_prefix)
    webhooks = await start_dispatcher(settings=settings, sessionmaker=sessionmaker, engine=engine)
    runtime = await start_runtime(
        settings=settings, sessionmaker=sessionmaker, bus=bus, executor=executor, listen=True
    )
    runtime.worker.observers.append(metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %s waiting for runs", runtime.worker.owner)
    try:
        await stop.wait()
    finally:
        await close_in_turn(
            runtime.close,
            webhooks.close,
            *([server.close] if server is not None else []),
            bus.close,
            engine.dispose,
        )
