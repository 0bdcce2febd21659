"""A sidecar driven at five times its throttle for two minutes: every event is
accounted for, end to end, and each throttle window raises exactly one
``policy.violation``.

Real processes on loopback, in the scale-out mode: `cogumi serve` on a fresh
PostgreSQL database with a Redis of its own key prefix, a `cogumi sidecar`
shipping to it, a fast local upstream, and real HTTP clients (httpx with
keep-alive, plus curl now and then) sending through the sidecar at a steady
5x the sidecar's limit. A run marked ``running`` stands in for a campaign, so
the API attaches the events to it and numbers them with ``seq`` in the order
the sidecar shipped them.

The throttle is set to 40 events per 10 s (twelve windows in two minutes
instead of two with the default 300 per 60 s), so that the window pattern is
checked a dozen times. 40 per 10 s plus one violation per window stays under
the API's own per-token budget of 300 events per clock minute even when the
sidecar's windows straddle the API's, so this measures the sidecar's throttle
and not the API's: the test asserts the API answered no 429.

What is asserted once the sidecar has drained:

- traffic: every request got its answer (throttling drops events, never
  traffic) and the upstream saw each one once;
- sent = stored + dropped: the requests the clients sent equal the request
  events the API stored plus the ``throttled`` count of the sidecar's last
  heartbeat, with no other drop reason; the stored events are distinct
  requests the clients really sent;
- the window pattern, read in ``seq`` order: 40 requests, one violation, 40
  requests, one violation, ... and at most 40 requests after the last one;
  each violation is a live story step of the run;
- the API's counters agree: the token's ``events_accepted`` and
  ``events_dropped``, the connection card's counters, and ``/metrics``
  (``cogumi_ingest_events_total`` and ``cogumi_sidecar_dropped_events_total``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cogumi.db.engine import make_engine, make_sessionmaker, transaction
from cogumi.runs.models import Run, RunStatus
from tests.databases import create_pg_database, drop_pg_database
from tests.events.conftest import REDIS_URL
from tests.servers import free_port

pytestmark = pytest.mark.reliability

COGUMI = str(Path(sys.executable).parent / "cogumi")
CURL = "/usr/bin/curl"
LIMIT = 40  # events per throttle window
WINDOW_SEC = 10.0
FACTOR = 5
RATE = FACTOR * LIMIT / WINDOW_SEC  # 20 requests/s
DURATION_SEC = 120.0
CLIENTS = 4
CURL_EVERY = 20  # one request in 20 goes through curl instead of httpx
PASSWORD = "a long enough password"


# --- the fast local upstream -------------------------------------------------------


@dataclass
class Upstream:
    """Answers every request ``200 ok`` with keep-alive and counts what it saw."""

    seen: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.seen.append(head.split(b" ", 2)[1].decode())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 2\r\n\r\nok")  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    origin = Upstream()
    server = await asyncio.start_server(origin.handle, "127.0.0.1", 0)
    origin.port = server.sockets[0].getsockname()[1]
    async with server:
        yield origin


# --- processes ---------------------------------------------------------------------


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COGUMI_", "HTTP", "http"))}
    env.update(values)
    return env


async def wait_until(check: Any, what: str, *, timeout: float, proc: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.returncode is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        try:
            result = await check()
        except (httpx.TransportError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def process(*argv: str, env: dict[str, str], log: Path) -> AsyncIterator[Any]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


# --- the API side ------------------------------------------------------------------


@dataclass
class Tenant:
    api: httpx.AsyncClient  # the owner's session
    org_id: uuid.UUID
    project_id: uuid.UUID
    token: str


async def sign_up_with_project(base: str) -> Tenant:
    api = httpx.AsyncClient(base_url=base, trust_env=False, timeout=30)
    email = f"throttle-{uuid.uuid4().hex[:8]}@example.com"
    me = await api.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert me.status_code == 201, me.text
    api.headers["X-CSRF-Token"] = me.json()["csrf_token"]
    project = await api.post("/api/projects", json={"name": "throttled"})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    token = await api.post(f"/api/projects/{project_id}/sidecar-tokens", json={"name": "edge"})
    assert token.status_code == 201, token.text
    return Tenant(api, uuid.UUID(me.json()["current_org"]["id"]), uuid.UUID(project_id),
                  token.json()["token"])  # fmt: skip


async def start_run(database_url: str, tenant: Tenant) -> uuid.UUID:
    """A run marked running (no worker owns it, no lease to lapse): events attach to it."""
    engine = make_engine(database_url)
    try:
        run_id = uuid.uuid4()
        async with transaction(make_sessionmaker(engine)) as session:
            session.add(Run(id=run_id, org_id=tenant.org_id, project_id=tenant.project_id,
                            status=RunStatus.running, started_at=datetime.now(UTC)))  # fmt: skip
        return run_id
    finally:
        await engine.dispose()


async def run_events(api: httpx.AsyncClient, run_id: uuid.UUID) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = await api.get(
            f"/api/runs/{run_id}/events", params={"after_seq": after, "limit": 1000}
        )
        assert page.status_code == 200, page.text
        events += page.json()["items"]
        after = page.json()["next_after_seq"]
    return events


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            found = ",".join(sorted(p for p in (match[2] or "").split(",") if p))
            if found == wanted:
                return float(match[3])
    return 0.0


# --- the load ----------------------------------------------------------------------


@dataclass
class Load:
    sent: list[str] = field(default_factory=list)  # paths answered 200, in send order
    failures: list[str] = field(default_factory=list)


async def drive(proxy: str, origin: int, total: int, load: Load) -> None:
    """``total`` requests at a steady ``RATE``, spread over ``CLIENTS`` keep-alive clients."""
    start = time.monotonic()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def client() -> None:
        async with httpx.AsyncClient(proxy=proxy, trust_env=False, timeout=30) as http:
            while not queue.empty():
                i = queue.get_nowait()
                await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
                path = f"/item/{i}"
                url = f"http://127.0.0.1:{origin}{path}"
                ok = await (via_curl(proxy, url) if i % CURL_EVERY == 0 else via_httpx(http, url))
                (load.sent if ok else load.failures).append(path)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def via_httpx(http: httpx.AsyncClient, url: str) -> bool:
    response = await http.get(url)
    return response.status_code == 200 and response.text == "ok"


async def via_curl(proxy: str, url: str) -> bool:
    curl = await asyncio.create_subprocess_exec(
        CURL, "-s", "--max-time", "20", "-x", proxy, url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await curl.communicate()
    return curl.returncode == 0 and out == b"ok"


# --- the test ----------------------------------------------------------------------


@pytest.fixture
def database_url_pg() -> Any:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


async def test_sidecar_at_five_times_its_throttle(database_url_pg: str, tmp_path: Path) -> None:
    assert Path(CURL).exists(), "curl is needed for the mixed clients"
    port, proxy_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    serve_env = clean_env(
        COGUMI_DATABASE_URL=database_url_pg, COGUMI_REDIS_URL=REDIS_URL,
        COGUMI_REDIS_KEY_PREFIX=f"test-{uuid.uuid4().hex}:", COGUMI_DATA_DIR=str(tmp_path / "data"),
        COGUMI_SECRET_KEY="throttle-test-secret-key-0123456789", COGUMI_LOG_LEVEL="warning",
    )  # fmt: skip
    async with (
        process(COGUMI, "serve", "--port", str(port), env=serve_env,
                log=tmp_path / "serve.log") as serve,
        upstream() as origin,
    ):  # fmt: skip
        async with httpx.AsyncClient(trust_env=False) as probe:

            async def healthy() -> bool:
                return (await probe.get(f"{base}/api/health")).status_code == 200

            await wait_until(healthy, "cogumi serve", timeout=90, proc=serve)
        tenant = await sign_up_with_project(base)
        run_id = await start_run(database_url_pg, tenant)
        sidecar_env = clean_env(SIDECAR_TOKEN=tenant.token, PROJECT_ID=str(tenant.project_id),
                                INGEST_URL=base, BATCH_FLUSH_MS="200", HEARTBEAT_INTERVAL_SEC="2")  # fmt: skip
        async with process(
            COGUMI, "sidecar", "--listen", f"127.0.0.1:{proxy_port}",
            "--throttle-per-window", str(LIMIT), "--throttle-window-sec", str(WINDOW_SEC),
            "--log-level", "warning", env=sidecar_env, log=tmp_path / "sidecar.log",
        ) as sidecar:  # fmt: skip

            async def listening() -> bool:
                _, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
                writer.close()
                return True

            await wait_until(listening, "cogumi sidecar", timeout=30, proc=sidecar)
            load = Load()
            total = int(RATE * DURATION_SEC)
            loader = asyncio.get_running_loop().create_task(
                drive(f"http://127.0.0.1:{proxy_port}", origin.port, total, load)
            )
            # While the load runs: the heartbeat reaches the API and its counters only grow.
            previous = 0
            while not loader.done():
                await asyncio.sleep(5)
                counters = await connection_counters(tenant)
                dropped = int(counters.get("dropped_total", 0))
                assert dropped >= previous, counters
                previous = dropped
            await loader
            final = await drained(tenant, run_id, proc=sidecar)
        await check_everything(tenant, run_id, load, origin, final, base)


async def connection(tenant: Tenant) -> dict[str, Any]:
    answer = await tenant.api.get(f"/api/projects/{tenant.project_id}/connection")
    assert answer.status_code == 200, answer.text
    card: dict[str, Any] = answer.json()
    return card


async def connection_counters(tenant: Tenant) -> dict[str, Any]:
    counters: dict[str, Any] = (await connection(tenant))["counters"]
    return counters


async def drained(tenant: Tenant, run_id: uuid.UUID, *, proc: Any) -> dict[str, Any]:
    """The sidecar's counters once it is quiet: two heartbeats in a row after the load
    with nothing queued, the same totals, and every event it counted as sent stored."""
    last: tuple[str | None, dict[str, Any]] = (None, {})

    async def settled() -> dict[str, Any] | None:
        nonlocal last
        card = await connection(tenant)
        beat, counters = card["last_heartbeat_at"], card["counters"]
        if beat == last[0]:
            return None
        previous, last = last[1], (beat, counters)
        totals = ("sent", "dropped_total", "queued")
        if counters.get("queued") != 0 or any(counters.get(k) != previous.get(k) for k in totals):
            return None
        stored = len(await run_events(tenant.api, run_id))
        return counters if stored == counters["sent"] else None

    result: dict[str, Any] = await wait_until(
        settled, "the sidecar to drain", timeout=60, proc=proc
    )
    return result


async def check_everything(
    tenant: Tenant,
    run_id: uuid.UUID,
    load: Load,
    origin: Upstream,
    final: dict[str, Any],
    base: str,
) -> None:
    # Traffic: throttling drops events, never requests.
    total = int(RATE * DURATION_SEC)
    assert load.failures == [] and len(load.sent) == total
    assert sorted(origin.seen) == sorted(load.sent)

    events = await run_events(tenant.api, run_id)
    requests = [e for e in events if e["type"] == "request"]
    violations = [e for e in events if e["type"] == "policy.violation"]
    assert len(requests) + len(violations) == len(events), {e["type"] for e in events}

    # Sent = stored + dropped, and nothing was dropped for any other reason.
    dropped = final["dropped"]
    assert dropped == {"throttled": dropped["throttled"]}, dropped
    assert final["dropped_total"] == dropped["throttled"]
    assert len(load.sent) == len(requests) + dropped["throttled"]
    paths = [e["destination"]["path"] for e in requests]
    assert len(set(paths)) == len(paths) and set(paths) <= set(load.sent)
    assert final["sent"] == len(events)

    # The window pattern in seq order: LIMIT requests, one violation, ...
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = "".join("v" if e["type"] == "policy.violation" else "r" for e in events)
    windows = kinds.split("v")
    assert all(len(w) == LIMIT for w in windows[:-1]), [len(w) for w in windows]
    assert len(windows[-1]) <= LIMIT
    expected = DURATION_SEC / WINDOW_SEC
    assert expected - 1 <= len(violations) <= expected + 1, len(violations)
    for violation in violations:
        payload = violation["payload_redacted"]
        assert (payload["reason"], payload["limit"], payload["window_sec"]) == (
            "ingest_throttled",
            LIMIT,
            WINDOW_SEC,
        )
    story = (await tenant.api.get(f"/api/runs/{run_id}/story")).json()["items"]
    policy_steps = [s for s in story if s["status"] == "ingest_throttled"]
    assert sorted(s["evidence_event_ids"][-1] for s in policy_steps) == sorted(
        v["id"] for v in violations
    )

    # The API's counters and /metrics agree with what is stored and what was dropped.
    tokens = (await tenant.api.get(f"/api/projects/{tenant.project_id}/sidecar-tokens")).json()
    (token,) = tokens if isinstance(tokens, list) else tokens["items"]
    assert token["events_accepted"] == len(events)
    assert token["events_dropped"] == dropped["throttled"]
    async with httpx.AsyncClient(trust_env=False) as scrape:
        text = (await scrape.get(f"{base}/metrics")).text
    assert metric(text, "cogumi_ingest_events_total", outcome="accepted") == len(events)
    assert metric(text, "cogumi_ingest_events_total", outcome="dropped") == 0
    assert (
        metric(text, "cogumi_sidecar_dropped_events_total", reason="throttled")
        == (dropped["throttled"])
    )
    rejected = metric(
        text, "cogumi_http_requests_total", method="POST", route="/api/ingest/events", status="429"
    )
    assert rejected == 0, "the API's own limit bit: the test would not measure the sidecar's"
