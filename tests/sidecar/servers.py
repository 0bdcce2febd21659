"""Real local peers for sidecar tests: an ingest API that records what it gets
(and can be told to fail or stop), an origin with the endpoints the tests need
(streamed bytes, echo, slow, a fake OpenAI-compatible chat API), and a TLS
variant with a self-signed certificate.

The real ingest API is built to the same contract (CONTRACTS.md); this fake
only records, deduplicates by ``batch_id`` and answers like it will.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cogumi.tasks import spawn

TOKEN = "cgs_test_0123456789abcdefghijklmnopqrstuv"
PROJECT_ID = "7b1c4a52-0000-4000-8000-00000000e5e5"

Scope = dict[str, Any]


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test process keeps its own handlers
        yield


@dataclass
class Served:
    app: Any
    port: int
    scheme: str
    server: QuietServer
    task: asyncio.Task[Any]
    ssl: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task

    async def restart(self) -> None:
        """Listen again on the same port (after :meth:`stop`)."""
        fresh = await serve(self.app, port=self.port, ssl=self.ssl)
        self.server, self.task = fresh.server, fresh.task


async def serve(app: Any, *, port: int = 0, ssl: tuple[str, str] | None = None) -> Served:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="off",
        ssl_certfile=ssl[0] if ssl else None,
        ssl_keyfile=ssl[1] if ssl else None,
        timeout_keep_alive=30,
    )
    server = QuietServer(config)
    task = spawn(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return Served(app, bound, "https" if ssl else "http", server, task, ssl)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(
    send: Any, status: int, data: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(data).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Ingest:
    """The fake ingest API: records batches, heartbeats and config fetches."""

    batches: list[dict[str, Any]] = field(default_factory=list)  # with events, deduplicated
    batch_ids: list[str] = field(default_factory=list)  # every attempt of a batch with events
    received: list[dict[str, Any]] = field(default_factory=list)  # every accepted body, in order
    run_active: bool = False
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    config_fetches: int = 0
    raw: list[bytes] = field(default_factory=list)
    fail_status: int | None = None
    retry_after: str | None = None
    redacted_per_event: int = 0  # answer as if the API masked this many secrets an event
    config: dict[str, Any] = field(default_factory=dict)
    config_status: int = 200
    token: str = TOKEN
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for b in self.batches for e in b["events"]]

    async def wait_events(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await _body(receive)
        headers = dict(scope["headers"])
        if headers.get(b"x-sidecar-token", b"").decode() != self.token:
            await _send_json(send, 401, {"error": "unauthenticated", "message": "bad token"})
            return
        path, method = scope["path"], scope["method"]
        if path == "/api/sidecar/config" and method == "GET":
            self.config_fetches += 1
            await _send_json(send, self.config_status, self.config)
        elif path == f"/api/projects/{PROJECT_ID}/sidecar/heartbeat" and method == "POST":
            self.heartbeats.append(json.loads(body))
            await _send_json(send, 200, {"ok": True, "run_active": self.run_active})
        elif path == "/api/ingest/events" and method == "POST":
            await self._ingest(body, send)
        else:
            await _send_json(send, 404, {"error": "not_found", "message": path})

    async def _ingest(self, body: bytes, send: Any) -> None:
        batch = json.loads(body)
        if batch["events"]:
            self.batch_ids.append(batch["batch_id"])
        if self.fail_status:
            extra = [(b"retry-after", self.retry_after.encode())] if self.retry_after else []
            await _send_json(send, self.fail_status, {"error": "failing"}, extra)
            return
        self.raw.append(body)
        self.received.append(batch)
        if batch["events"] and batch["batch_id"] not in {b["batch_id"] for b in self.batches}:
            self.batches.append(batch)
        self.arrived.set()
        answer = {"ok": True, "accepted": len(batch["events"]), "dropped": 0}
        if self.redacted_per_event and batch["events"]:
            answer["redacted"] = self.redacted_per_event * len(batch["events"])
        await _send_json(send, 200, answer | {"run_active": self.run_active})


@dataclass
class Origin:
    """Upstream the agent talks to, plus a fake OpenAI-compatible chat API."""

    peers: list[tuple[str, int]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.peers.append(tuple(scope["client"]))  # type: ignore[arg-type]
        path = scope["path"]
        body = await _body(receive)
        if path.startswith("/bytes/"):
            await self._stream(send, int(path.rsplit("/", 1)[1]))
        elif path == "/echo":
            chunked = (b"transfer-encoding", b"chunked") in scope["headers"]
            info = {
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "chunked": chunked,
            }
            self.uploads.append(info)
            await _send_json(send, 200, info)
        elif path == "/slow":
            await asyncio.sleep(1.5)
            await _send_json(send, 200, {"slow": True})
        elif path == "/v1/chat/completions":
            await _send_json(send, 200, _completion(json.loads(body)))
        else:
            await _send_json(send, 200, {"path": path, "method": scope["method"]})

    async def _stream(self, send: Any, size: int) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})  # fmt: skip
        block = bytes(range(256)) * 256
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": sent < size})


def _completion(request: dict[str, Any]) -> dict[str, Any]:
    last = request["messages"][-1]["content"]
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": request["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"echo: {last}"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }  # fmt: skip


def self_signed(directory: Path) -> tuple[str, str]:
    """(certfile, keyfile) for localhost / 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


@contextlib.asynccontextmanager
async def running(app: Any, **kwargs: Any) -> AsyncIterator[Served]:
    served = await serve(app, **kwargs)
    try:
        yield served
    finally:
        if not served.task.done():
            await served.stop()
