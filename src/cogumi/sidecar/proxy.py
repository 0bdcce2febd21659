"""The asyncio shell of the forward proxy: sockets in, exchanges out.

Plain HTTP (absolute-form URIs) is forwarded with keep-alive on both sides and
bodies streamed chunk by chunk; CONNECT is tunnelled byte for byte; requests to
sink domains are answered here and never leave the network. Every exchange
ends as one record through ``emit`` (turned into an event by the pure
:mod:`core` once it passed the throttle), also when the upstream fails or the
sidecar shuts down mid-exchange.

The shell is built on protocols, not streams: a :class:`ClientConn`
(:mod:`client`) parses requests with httptools and hands each to a job
(:mod:`jobs`, :mod:`forward`, :mod:`tunnel`) that writes to the transports
directly. Flow control is the transports' own (a full write buffer pauses
reading on the other side), and all timeouts are deadlines on the connection
that one periodic sweep checks, so an exchange costs no task switch, no stream
object and no timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Final

from cogumi.sidecar.client import ClientConn
from cogumi.sidecar.core import Exchange, Policy
from cogumi.sidecar.options import SidecarOptions
from cogumi.sidecar.upstream import Resolver, UpstreamPool

log = logging.getLogger("cogumi.sidecar")

POOL_SWEEP_SEC: Final = 5.0
DEFER_ACCEPT_SEC: Final = 2

Emit = Callable[[Exchange, Policy], None]
Opened = Callable[[Exchange], None]


def _unwatched(_ex: Exchange) -> None:
    """No watermark to hold: nobody is told when an exchange starts."""


class ProxyServer:
    """Owns the listening socket, the upstream pool, the live connections and
    the deadline sweep."""

    def __init__(
        self,
        options: SidecarOptions,
        policy: Callable[[], Policy],
        emit: Emit,
        opened: Opened | None = None,
    ) -> None:
        self.options = options
        self.policy = policy
        self.emit = emit
        # Told when an exchange starts (its ``emit`` always follows), so the
        # shipper's watermark can wait for exchanges still in flight.
        self.exchange_opened: Opened = opened if opened is not None else _unwatched
        self.pool = UpstreamPool()
        self.resolver = Resolver(options.dns_cache_sec)
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[ClientConn] = set()
        self.started_at = time.time()
        self.connections_accepted = 0
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.TimerHandle | None = None
        tick = max(0.005, min(0.25, options.connect_timeout / 4,
                              options.upstream_timeout / 4, options.client_idle_timeout / 4))  # fmt: skip
        self._tick = tick
        # Deadlines are set from a clock the sweep refreshes (``now``), so setting one
        # costs an addition; each span adds one tick so no timeout fires early.
        self.now = 0.0
        self.connect_span = options.connect_timeout + tick
        self.upstream_span = options.upstream_timeout + tick
        self.idle_span = options.client_idle_timeout + tick
        self._next_sweep = 0.0
        self._all_idle: asyncio.Future[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    async def start(self) -> tuple[str, int]:
        self._loop = asyncio.get_running_loop()
        self.now = self._loop.time()
        host, port = self.options.listen_address
        self.server = await self._loop.create_server(
            partial(ClientConn, self), host, port, reuse_address=True, backlog=1024
        )
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Clients speak first: wake us when the request is there, not at the handshake.
            for sock in self.server.sockets:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SEC)
        self._ticker = self._loop.call_later(self._tick, self._on_tick)
        sockname = self.server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def record(self, ex: Exchange, policy: Policy) -> None:
        ex.finish()
        try:
            self.emit(ex, policy)
        except Exception:  # one broken event never takes the proxy down
            log.exception("recording an exchange failed")

    def _on_tick(self) -> None:
        self.now = now = self.loop.time()
        for conn in [c for c in self.conns if c.deadline <= now]:
            conn.on_deadline()
        if now >= self._next_sweep:
            self._next_sweep = now + POOL_SWEEP_SEC
            self.pool.sweep()
        self._ticker = self.loop.call_later(self._tick, self._on_tick)

    def conn_idle(self) -> None:
        """A connection finished its exchange or closed: during shutdown, are all idle now?"""
        waiter = self._all_idle
        if waiter is not None and not waiter.done() and all(c.job is None for c in self.conns):
            waiter.set_result(None)

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting, let busy exchanges finish for ``grace`` s, then cut."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            if conn.job is None:
                conn.close()
        if any(c.job is not None for c in self.conns):
            self._all_idle = self.loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._all_idle), grace)
        for conn in list(self.conns):
            if conn.job is not None:
                conn.job.abort("sidecar_shutdown", "the sidecar stopped mid-exchange")
            conn.abort()
        if self._ticker is not None:
            self._ticker.cancel()
        self.pool.close_all()
        await asyncio.sleep(0)  # let the transports report their close
