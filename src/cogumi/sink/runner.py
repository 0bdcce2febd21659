"""Wiring of one sink process: certificate, listeners, the sidecar's shipper,
signals. ``cogumi sink`` calls :func:`main`; tests may drive :class:`Sink`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cogumi.sidecar.apiclient import ApiClient
from cogumi.sidecar.runner import build_policy
from cogumi.sidecar.shipper import Shipper
from cogumi.sink.cert import SinkCertificate, make_certificate
from cogumi.sink.options import SinkOptions, from_argv
from cogumi.sink.server import SinkServer
from cogumi.tasks import spawn

log = logging.getLogger("cogumi.sink")


class Sink:
    """HTTP and HTTPS listeners feeding one shipper (ingest, heartbeat, watermark)."""

    def __init__(self, options: SinkOptions, client: ApiClient | None = None) -> None:
        self.options = options
        self.shipper = Shipper(options.shipping, client)
        self.policy = build_policy(options.shipping, None)
        self.certificate: SinkCertificate | None = None
        self.cert_path: Path | None = None
        self.servers: list[SinkServer] = []
        self._tasks: list[asyncio.Task[Any]] = []

    def _server(self, tls: bool) -> SinkServer:
        default_host = next(iter(self.options.shipping.sink_domains), "attacker-sink.local")
        return SinkServer(
            policy=lambda: self.policy,
            submit=self.shipper.submit,
            opened=self.shipper.opened,
            preview_bytes=self.options.shipping.preview_bytes,
            idle_timeout=self.options.shipping.client_idle_timeout,
            default_host=default_host,
            tls=self._tls_context() if tls else None,
        )

    def _tls_context(self) -> Any:
        host = (self.options.tls_listen or "").rpartition(":")[0].strip("[]")
        names = [*self.options.shipping.sink_domains, *self.options.tls_names,
                 "localhost", "127.0.0.1", host]  # fmt: skip
        self.certificate = make_certificate(n for n in names if not _unspecified(n))
        self.cert_path = _write_certificate(self.certificate.cert_pem, self.options.cert_file)
        return self.certificate.server_context()

    async def start(self) -> list[tuple[str, int]]:
        if self.options.shipping.ships:
            self._tasks += [
                spawn(self.shipper.run(), name="sink-ship"),
                spawn(self.shipper.heartbeat_loop(), name="sink-heartbeat"),
            ]
        else:
            log.warning("no INGEST_URL/SIDECAR_TOKEN: requests are logged here, not shipped")
        addresses = []
        plain = self._server(tls=False)
        addresses.append(await plain.start(*self.options.shipping.listen_address))
        self.servers.append(plain)
        if self.options.tls_listen:
            secure = self._server(tls=True)
            host, _, port = self.options.tls_listen.rpartition(":")
            addresses.append(await secure.start(host.strip("[]") or "127.0.0.1", int(port)))
            self.servers.append(secure)
        return addresses

    async def stop(self) -> None:
        grace = min(2.0, self.options.shipping.shutdown_timeout)
        await asyncio.gather(*(server.close(grace) for server in self.servers))
        if self.options.shipping.ships:
            await self.shipper.drain(self.options.shipping.shutdown_timeout)
            with contextlib.suppress(Exception):
                await self.shipper.heartbeat_once()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.shipper.aclose()


def _unspecified(host: str) -> bool:
    """Empty or an any-address bind (it is no name a client could connect to)."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _write_certificate(pem: bytes, where: str | None) -> Path:
    path = Path(where) if where else Path(tempfile.mkdtemp(prefix="cogumi-sink-")) / "sink.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    return path


async def serve(options: SinkOptions) -> None:
    """Run until SIGTERM/SIGINT, then flush what is buffered and stop."""
    sink = Sink(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    addresses = await sink.start()
    for (host, port), server in zip(addresses, sink.servers, strict=True):
        log.info("sink listening on %s://%s:%d", server.scheme, host, port)
    if sink.certificate is not None:
        log.info("HTTPS certificate written to %s", sink.cert_path)
        log.info("HTTPS certificate SHA-256 fingerprint %s", sink.certificate.fingerprint)
    await stop.wait()
    await sink.stop()
    c = sink.shipper.counters
    log.info("stopped: %d sent, %d dropped %s", c.sent, sum(c.dropped.values()), dict(c.dropped))


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    options = from_argv(argv, os.environ if env is None else env)
    logging.basicConfig(
        level=options.shipping.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(options))
