"""Pre-bound listening sockets (demo agent, scan's local servers) give accepted connections
TCP_NODELAY, so a keep-alive reply written in two parts is not held back by the peer's
delayed ACK (about 40 ms per request, every turn of a campaign)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import uvicorn

from cogumi.demo_agent.server import _bind
from cogumi.scan.stack import bind_loopback


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    "make", [lambda: _bind("127.0.0.1:0", "--listen"), lambda: bind_loopback("127.0.0.1:0")],
    ids=["demo-agent", "scan"],
)  # fmt: skip
async def test_accepted_connections_have_nodelay(make: Callable[[], socket.socket]) -> None:
    sock = make()
    server = uvicorn.Server(uvicorn.Config(_app, log_level="warning", lifespan="off"))
    task = asyncio.get_running_loop().create_task(server.serve([sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            (connection,) = server.server_state.connections
            accepted = connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.should_exit = True
        await task
