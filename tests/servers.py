"""Serve an ASGI app on a real loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections import deque
from collections.abc import AsyncIterator

import uvicorn

_RECENT = 2_000
_handed_out: deque[int] = deque(maxlen=_RECENT)


def free_port() -> int:
    """A loopback port nothing is bound to, for a server a test starts.

    Picked below the kernel's ephemeral range: a port from that range (what
    binding port 0 gives) can be taken by any outgoing connection between this
    check and the server's own bind, which happened with twenty sidecars and
    agents starting at once ("Address already in use"). Each pytest-xdist process
    picks from its own share of the range, so two never pick the same port; and
    none of the last 2,000 ports handed out here is handed out again, since a
    port picked but not yet bound by its server passes the free check (a cluster
    of forty servers drew the same port twice)."""
    first, last = _share(max(1024, _ephemeral_low() - 16_000), _ephemeral_low() - 1)
    recent = set(_handed_out)
    for _ in range(100):
        port = random.randint(first, last)
        if port in recent:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.append(port)
            return port
    with socket.socket() as s:  # everything tried was taken: any free port
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _share(first: int, last: int) -> tuple[int, int]:
    """This test process's slice of the ports ``first..last``: pytest-xdist numbers
    its processes ``gw0``, ``gw1``... (the whole range without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    if count <= 1 or index >= count:
        return first, last
    size = (last - first + 1) // count
    return first + index * size, first + (index + 1) * size - 1


def _ephemeral_low() -> int:
    """The first port of the range outgoing connections take theirs from (Linux)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return max(int(handle.read().split()[0]), 2048)
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


@contextlib.asynccontextmanager
async def serve_app(app: object, *, lifespan: str = "off") -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:<free port>; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan=lifespan, log_level="warning"
    )  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
