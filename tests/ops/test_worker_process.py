"""Real ``cogumi worker`` processes: Prometheus metrics scraped from ``--metrics-listen``
(run outcomes and durations, queue depth, lease renewals, reaps), and webhooks for the runs a
worker ends sent by that worker at once, with every periodic sweep turned down to an hour."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from prometheus_client.parser import text_string_to_metric_families

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.runs.models import Run, RunStatus
from cogumi.webhooks import signing
from tests.ops.scale_out import ScaleOut, own_database, scale_out, worker_process
from tests.runs.helpers import FINAL, make_project, start, wait_status
from tests.servers import free_port, serve_app

pytestmark = pytest.mark.e2e

TOKEN = "worker-metrics-token-for-tests"
HOUR = 3600


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with own_database(backend, tmp_path) as url:
        yield url


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> Samples:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, f"worker exited: {proc.communicate()[0]}"
            try:
                response = await client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
                assert response.status_code == 200, response.text
                assert response.headers["content-type"].startswith("text/plain")
                return parse(response.text)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the worker's metrics never answered"
                await asyncio.sleep(0.2)


async def insert_run(scale: ScaleOut, project_id: str, **values: object) -> uuid.UUID:
    run_id = uuid.uuid4()
    async with transaction(scale.app.state.sessionmaker) as session:
        session.add(Run(id=run_id, org_id=scale.owner.org_id, project_id=uuid.UUID(project_id),
                        **values))  # fmt: skip
    return run_id


async def test_worker_metrics_are_scraped(database: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    # The app's reaper passes once at start and then sleeps: reaps below are the worker's.
    async with scale_out(
        database, tmp_path, worker_env={"COGUMI_METRICS_TOKEN": TOKEN,
                                        "COGUMI_RUN_REAPER_INTERVAL_SEC": "0.5"},
        run_reaper_interval_sec=HOUR,
    ) as scale:  # fmt: skip
        client = scale.owner.client
        projects = [(await make_project(client))["id"] for _ in range(4)]
        now = utcnow()
        # Queued with a job that is not due for an hour: counted, never run.
        await insert_run(scale, projects[0], status=RunStatus.queued,
                         enqueued_at=now + timedelta(hours=1))  # fmt: skip
        with worker_process(
            scale.env, "--metrics-listen", f"127.0.0.1:{port}", steps=6, step_sec=0.3
        ) as worker:
            before = await scrape(url, worker)
            assert value(before, "cogumi_runs", status="queued") == 1
            async with httpx.AsyncClient() as anonymous:
                refused = await anonymous.get(url)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthenticated"

            response = await start(client, projects[1])
            assert response.status_code == 201, response.text
            started = response.json()["id"]
            # A run whose worker died (lease lapsed) and a queued run whose job was lost.
            orphan = await insert_run(scale, projects[2], status=RunStatus.running, attempts=1,
                                      lease_owner="dead-host:1:gone", started_at=now,
                                      lease_expires_at=now - timedelta(seconds=30))  # fmt: skip
            lost_job = await insert_run(
                scale, projects[3], status=RunStatus.queued, enqueued_at=None
            )
            for run_id in (started, str(orphan), str(lost_job)):
                final = await wait_status(client, run_id, FINAL, timeout=90)
                assert final["status"] == "completed", final
            samples = await scrape(url, worker)
            worker.terminate()
            assert worker.wait(timeout=30) == 0

    assert value(samples, "cogumi_runs_finished_total", status="completed") == 3
    assert value(samples, "cogumi_run_duration_seconds_count", status="completed") == 3
    assert value(samples, "cogumi_run_duration_seconds_sum", status="completed") >= 3 * 1.5
    assert value(samples, "cogumi_runs", status="queued") == 1  # the hour-away one, read now
    assert value(samples, "cogumi_runs", status="running") == 0
    assert value(samples, "cogumi_lease_renewals_total", outcome="renewed") >= 3
    assert value(samples, "cogumi_reaped_runs_total", action="requeued") >= 1
    assert value(samples, "cogumi_reaped_runs_total", action="resent") >= 1


@dataclass
class Receiver:
    url: str = ""
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.got.append((dict(request.headers), await request.body()))
            return Response(status_code=204)

        return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()
    async with serve_app(box.app()) as url:
        box.url = url
        yield box


async def test_the_worker_sends_its_runs_webhooks(
    database: str, tmp_path: Path, receiver: Receiver
) -> None:
    slow = {"COGUMI_WEBHOOK_SWEEP_INTERVAL_SEC": str(HOUR)}
    async with scale_out(
        database, tmp_path, worker_env=slow, webhook_sweep_interval_sec=HOUR
    ) as scale:
        client = scale.owner.client
        body = {"name": "ci", "url": f"{receiver.url}/hook", "events": ["run.completed"]}
        created = await client.post("/api/webhooks", json=body)
        assert created.status_code == 201, created.text
        hook = created.json()
        project = (await make_project(client))["id"]
        with worker_process(scale.env, steps=2) as worker:
            run_id = (await start(client, project)).json()["id"]
            final = await wait_status(client, run_id, FINAL, timeout=90)
            assert final["status"] == "completed"
            async with asyncio.timeout(60):  # generous; the next sweep would be in an hour
                while not receiver.got:
                    assert worker.poll() is None, worker.communicate()[0]
                    await asyncio.sleep(0.05)
            worker.terminate()
            assert worker.wait(timeout=30) == 0
        log = (await client.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["items"]
    [(headers, payload)] = receiver.got
    assert signing.verify(hook["secret"], headers["x-cogumi-signature"], payload)
    document = json.loads(payload)
    assert document["type"] == "run.completed" and headers["x-cogumi-event"] == "run.completed"
    assert document["data"]["run"]["id"] == run_id
    [entry] = log
    assert entry["status"] == "delivered" and entry["attempts"] == 1


def _worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cogumi", "worker", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_metrics_listen_is_checked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COGUMI_")}
    env.update(COGUMI_DATA_DIR=str(tmp_path), COGUMI_REDIS_URL="redis://127.0.0.1:6379/0")
    bad = _worker(env, "--metrics-listen", "9100")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = _worker(env, "--metrics-listen", f"127.0.0.1:{port}")
    assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
