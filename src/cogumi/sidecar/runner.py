"""Wiring of one sidecar process: options -> policy, shipper, proxy, loops,
signals. ``cogumi sidecar`` calls :func:`main`; tests drive :class:`Sidecar`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from cogumi.detect.destinations import DestinationRules
from cogumi.sidecar.apiclient import ApiClient, ApiError
from cogumi.sidecar.core import Policy
from cogumi.sidecar.options import SidecarOptions, from_argv
from cogumi.sidecar.proxy import ProxyServer
from cogumi.sidecar.shipper import Shipper
from cogumi.tasks import spawn

log = logging.getLogger("cogumi.sidecar")

CONFIG_LISTS = ("tool_domains", "internal_suffixes", "sensitive_paths", "sink_domains")


def build_policy(options: SidecarOptions, api: Mapping[str, Sequence[str]] | None) -> Policy:
    """The options' lists added to the project's (``api``) lists."""
    api = api or {}

    def merged(name: str) -> list[str]:
        return [*api.get(name, ()), *getattr(options, name)]

    rules = DestinationRules.from_lists(
        sink_domains=merged("sink_domains"),
        internal_suffixes=merged("internal_suffixes"),
        tool_domains=merged("tool_domains"),
    )
    return Policy(rules=rules, sensitive_paths=tuple(dict.fromkeys(merged("sensitive_paths"))))


def parse_project_config(answer: Any) -> dict[str, list[str]]:
    """Validate ``GET /api/sidecar/config``; a bad answer is ignored, not trusted."""
    if not isinstance(answer, dict):
        raise ValueError("config answer is not an object")
    lists: dict[str, list[str]] = {}
    for name in CONFIG_LISTS:
        value = answer.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"config field {name} is not a list of strings")
        lists[name] = value
    return lists


class Sidecar:
    """One running sidecar: proxy + shipper + heartbeat + config refresh."""

    def __init__(self, options: SidecarOptions, client: ApiClient | None = None) -> None:
        self.options = options
        self.shipper = Shipper(options, client)
        self.policy = build_policy(options, None)
        self.config_source = "options"
        self.proxy = ProxyServer(
            options, lambda: self.policy, self.shipper.submit, self.shipper.opened
        )
        self.address: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> tuple[str, int]:
        if self.options.ships:
            await self.refresh_config()
            self._tasks += [
                spawn(self.shipper.run(), name="sidecar-ship"),
                spawn(self.shipper.heartbeat_loop(), name="sidecar-heartbeat"),
                spawn(self._config_loop(), name="sidecar-config"),
            ]
        else:
            log.warning("no INGEST_URL/SIDECAR_TOKEN: events are logged here, not shipped")
        self.address = await self.proxy.start()
        log.info("sidecar proxy listening on %s:%d", *self.address)
        return self.address

    async def refresh_config(self) -> bool:
        url = f"{self.options.ingest_url}/api/sidecar/config"
        try:
            response = await self.shipper.client.get(url, headers=self.shipper._auth())
            if not response.is_success:
                raise ApiError(f"the API answered {response.status_code}")
            lists = parse_project_config(response.json())
        except (ApiError, ValueError) as exc:
            log.warning("project config unavailable (%s); using the options' lists", exc)
            return False
        self.policy = build_policy(self.options, lists)
        self.config_source = "api"
        return True

    async def _config_loop(self) -> None:
        failures = 0 if self.config_source == "api" else 1
        while True:
            interval = self.options.config_refresh_sec
            if failures:
                interval = min(interval, 5.0 * 2 ** (failures - 1))
            await asyncio.sleep(interval)
            failures = 0 if await self.refresh_config() else failures + 1

    async def stop(self) -> None:
        """Stop accepting, finish what is in flight, flush events (bounded), stop."""
        await self.proxy.close(grace=min(2.0, self.options.shutdown_timeout))
        if self.options.ships:
            await self.shipper.drain(self.options.shutdown_timeout)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.shipper.heartbeat_once()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.shipper.aclose()


async def serve(options: SidecarOptions) -> None:
    """Run until SIGTERM/SIGINT, then shut down cleanly."""
    sidecar = Sidecar(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sidecar.start()
    await stop.wait()
    log.info("stopping: flushing buffered events (up to %gs)", options.shutdown_timeout)
    await sidecar.stop()
    c = sidecar.shipper.counters
    log.info("stopped: %d sent, %d dropped %s", c.sent, sum(c.dropped.values()), dict(c.dropped))


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    options = from_argv(argv, os.environ if env is None else env)
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))
