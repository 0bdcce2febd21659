"""The agent test endpoint (native contract) and the process that runs it.

``POST /message`` ``{run_id, session_id, actor, message, metadata}`` ->
``{message, done, metadata}``; ``POST /health`` -> ``{ok: true}``. Bad input
is a 422 in the product's one error shape. One process serves two ports: the
agent endpoint and the agent's own tool API (whose calls go out through the
proxy and come back in, so the sidecar sees them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cogumi.demo_agent.brain import RuleBrain
from cogumi.demo_agent.llm import LlmError, complete, system_message
from cogumi.demo_agent.memory import LongTermMemory, Sessions
from cogumi.demo_agent.options import DemoOptions, from_argv, split_address
from cogumi.demo_agent.toolapi import build_tool_api
from cogumi.demo_agent.tools import Tools
from cogumi.errors import install_error_handlers
from cogumi.tasks import spawn

log = logging.getLogger("cogumi.demo_agent")

MAX_MESSAGE = 64 * 1024


class MessageMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    script_id: str | None = Field(default=None, max_length=200)
    step: str | int | None = None
    attack_style: str | None = Field(default=None, max_length=200)


class MessageIn(BaseModel):
    """Unknown fields are ignored: the contract may grow."""

    model_config = ConfigDict(extra="ignore")
    run_id: str | None = Field(default=None, max_length=200)
    session_id: str = Field(min_length=1, max_length=200)
    actor: str = Field(default="adversary", min_length=1, max_length=40)
    message: str = Field(min_length=1, max_length=MAX_MESSAGE)
    metadata: MessageMeta = Field(default_factory=MessageMeta)


class MessageOut(BaseModel):
    message: str
    done: bool
    metadata: dict[str, Any]


class Agent:
    """Everything one agent process holds: options, brain, sessions, clients."""

    def __init__(self, options: DemoOptions, tool_api_url: str) -> None:
        self.options = options
        self.tools = Tools(tool_api_url, downgrade_https=options.downgrade_https)
        self.memory = LongTermMemory(options.memory_file, options.memory_scope)
        self.sessions = Sessions()
        self.brain = RuleBrain(options, self.tools, self.memory)
        self.llm_client = httpx.AsyncClient(trust_env=True) if options.llm_base_url else None

    async def aclose(self) -> None:
        await self.tools.aclose()
        if self.llm_client is not None:
            await self.llm_client.aclose()

    async def answer(self, body: MessageIn) -> MessageOut:
        started = time.monotonic()
        session = self.sessions.get(body.session_id)
        turn = self.brain.read(body.message, run_id=body.run_id, session_id=body.session_id)
        reply = await self.brain.respond(turn, session)
        text = reply.text
        if self.llm_client is not None:
            text = await complete(
                self.options, self.llm_client,
                system=system_message(self.options, self.tools.tool_api_url, self.memory.rules(body.run_id)),
                history=session.history, message=body.message, calls=reply.calls,
            )  # fmt: skip
        session.add("user", body.message)
        session.add("assistant", text)
        session.turns += 1
        if reply.calls:
            session.last_calls = list(reply.calls)
        wait = self.options.latency_ms / 1000 - (time.monotonic() - started)
        if wait > 0:
            await asyncio.sleep(wait)
        calls = [c.public() for c in reply.calls + reply.background]
        return MessageOut(
            message=text,
            done=False,
            metadata={"agent": "cogumi-demo-agent", "profile": self.options.profile,
                      "brain": "llm" if self.llm_client else "rules", "turn": session.turns,
                      "remembered": reply.remembered, "tool_calls": calls},
        )  # fmt: skip


def build_app(agent: Agent) -> FastAPI:
    app = FastAPI(title="COGUMI demo agent", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    @app.post("/message", response_model=MessageOut)
    async def message(body: MessageIn) -> MessageOut | JSONResponse:
        try:
            return await agent.answer(body)
        except LlmError as exc:
            return JSONResponse({"error": "llm_unavailable", "message": str(exc)}, status_code=502)

    @app.api_route("/health", methods=["GET", "POST"])
    async def health() -> dict[str, Any]:
        return {"ok": True, "profile": agent.options.profile}

    return app


class _Server(uvicorn.Server):
    """Two servers share one process: signals are handled once, below."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(address: str, option: str) -> socket.socket:
    host, port = split_address(address, option)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY on every accepted connection
    # (it skips sockets made with proto 0); without it a keep-alive reply written in
    # two parts waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(options: DemoOptions) -> None:
    """Run the agent and its tool API until SIGTERM/SIGINT."""
    agent_sock = _bind(options.listen, "--listen")
    tool_sock = _bind(options.tool_api_listen, "--tool-api-listen")
    agent = Agent(options, _url(tool_sock))
    servers = [
        _Server(uvicorn.Config(build_tool_api(), log_level=options.log_level, lifespan="off")),
        _Server(uvicorn.Config(build_app(agent), log_level=options.log_level, lifespan="off")),
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    tasks = [spawn(servers[0].serve([tool_sock])), spawn(servers[1].serve([agent_sock]))]
    while not all(s.started for s in servers) and not any(t.done() for t in tasks):  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    flaws = ",".join(sorted(f.value for f in options.flaws)) or "none"
    print(f"cogumi demo-agent: agent {_url(agent_sock)} tool-api {_url(tool_sock)} "
          f"profile {options.profile} flaws {flaws}", flush=True)  # fmt: skip
    try:
        await asyncio.gather(*tasks)
    finally:
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await agent.aclose()


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    import os

    options = from_argv(argv, os.environ if env is None else env)
    logging.basicConfig(level=options.log_level.upper(), stream=sys.stderr)
    asyncio.run(serve(options))
