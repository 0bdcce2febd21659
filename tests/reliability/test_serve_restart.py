"""Scale-out item 3: one ``serve`` process restarted (SIGTERM, then started again on its
port, as a rolling deploy does) while campaigns run, sidecars ship to it, SSE
clients follow runs through it and API clients poll both processes.

Every SSE client (httpx streaming over real HTTP) that followed a run through
the restarted process reconnects to the other one with ``Last-Event-ID`` and
ends up with exactly the run's stream messages as stored: every seq from 1 to
the last, once, in order. No request anywhere (pollers, SSE clients, the
sidecars' own calls in the access logs) answers 5xx; only requests to the
restarted process while it is down fail, at the transport level. Sidecars
buffer through the gap and drop nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.events.test_stream import sse_items
from tests.reliability import checks
from tests.reliability.cluster import FINAL, Cluster, Project, scripts_without, until

pytestmark = pytest.mark.reliability

RESTARTED, OTHER = 0, 1
_SERVER_ERROR = re.compile(r'"logger": "cogumi.access".*"status": 5\d\d')


@dataclass
class Follower:
    """An SSE client following one run: starts on the restarted serve, fails over to the other."""

    run_id: str
    project: Project
    seqs: list[int] = field(default_factory=list)
    connects: list[tuple[int, str | None]] = field(default_factory=list)  # (serve, Last-Event-ID)
    server_errors: list[int] = field(default_factory=list)
    cut: int = 0  # connections that ended without the run's last message
    done_at: float | None = None  # when the run's final status arrived

    async def run(self, cluster: Cluster) -> None:
        serve, done = RESTARTED, False
        while not done:
            last = str(self.seqs[-1]) if self.seqs else None
            self.connects.append((serve, last))
            done = await self._stream(cluster, serve, last)
            if not done:
                self.cut += 1
                serve = OTHER  # the balancer takes the restarted process out
                await asyncio.sleep(0.2)

    async def _stream(self, cluster: Cluster, serve: int, last: str | None) -> bool:
        url = f"{cluster.url(serve)}/api/runs/{self.run_id}/stream"
        headers = {"Last-Event-ID": last} if last else {}
        final = False
        try:
            async with self.project.org.client.stream(
                "GET", url, headers=headers, timeout=httpx.Timeout(30, read=60)
            ) as response:
                if response.status_code >= 500:
                    self.server_errors.append(response.status_code)
                    return False
                assert response.status_code == 200, response.status_code
                async for item in sse_items(response):
                    self.seqs.append(int(item["id"]))
                    if item["event"] == "run.status":
                        final = json.loads(item["data"])["status"] in FINAL
                        self.done_at = time.monotonic() if final else None
        except httpx.TransportError:
            return False
        return final  # the server ends a stream once its run is over and all was sent


@dataclass
class Poller:
    """An API client reading run state from both serves in turn, as a dashboard would."""

    runs: dict[str, Project]
    answers: list[tuple[float, int, int]] = field(default_factory=list)  # (t, serve, status)
    failures: list[tuple[float, int, str]] = field(default_factory=list)  # (t, serve, error)

    async def run(self, cluster: Cluster, stop: asyncio.Event) -> None:
        paths = ["", "/findings", "/results", "/story", "/events?limit=50"]
        n = 0
        while not stop.is_set():
            for run_id, project in self.runs.items():
                serve, n = n % len(cluster.serves), n + 1
                url = f"{cluster.url(serve)}/api/runs/{run_id}{paths[n % len(paths)]}"
                try:
                    response = await project.org.client.get(url, timeout=10)
                    self.answers.append((time.monotonic(), serve, response.status_code))
                except httpx.TransportError as exc:
                    self.failures.append((time.monotonic(), serve, type(exc).__name__))
                await asyncio.sleep(0.02)


def _server_errors_logged(cluster: Cluster, offsets: dict[str, int]) -> list[str]:
    found = []
    for serve in cluster.serves:
        with serve.proc.log.open("rb") as log:
            log.seek(offsets[serve.proc.name])
            found += [line for line in log.read().decode(errors="replace").splitlines()
                      if _SERVER_ERROR.search(line)]  # fmt: skip
    return found


async def test_restarting_a_serve_under_load_loses_no_stream_message(cluster: Cluster) -> None:
    offsets = {s.proc.name: s.proc.log.stat().st_size for s in cluster.serves}
    # Long enough campaigns that most end after the restart (findings are not compared).
    scripts = scripts_without({"memory_poisoning"})
    runs = await cluster.start_campaigns(cluster.projects[3:11], scripts=scripts)
    followers = [Follower(run_id, project) for run_id, project in runs.items()]
    following = [asyncio.ensure_future(f.run(cluster)) for f in followers]
    pollers, stop = [Poller(runs) for _ in range(3)], asyncio.Event()
    polling = [asyncio.ensure_future(p.run(cluster, stop)) for p in pollers]
    try:
        # Restart as soon as every client has a stream position and one run is under
        # way: on a busy machine waiting for all of them to be deep in their campaigns
        # lets the first runs end before the restart, and nothing would fail over.
        async def streaming_mid_campaign() -> bool:
            return all(f.seqs for f in followers) and any(len(f.seqs) >= 3 for f in followers)

        await until(streaming_mid_campaign, timeout=120, what="every follower to be mid-stream")
        down_at = time.monotonic()
        restarted = cluster.serves[RESTARTED]
        await restarted.proc.stop()  # SIGTERM: open streams drain for the shutdown grace
        stopped_at = time.monotonic()
        await restarted.proc.start()
        await restarted.wait_ready()
        up_at = time.monotonic()
        final = await cluster.wait_final(runs)
        async with asyncio.timeout(60):
            await asyncio.gather(*following)
    finally:
        stop.set()
        for task in following:
            task.cancel()
        await asyncio.gather(*polling, *following, return_exceptions=True)

    assert {v.status.value for v in final.values()} == {"completed"}
    stored = {
        str(run_id): last
        for run_id, last in await cluster.sql(
            "SELECT id, last_stream_seq FROM runs WHERE id = ANY(:ids)",
            ids=[uuid.UUID(r) for r in runs],
        )
    }
    lost = {f.run_id: (f.seqs, stored[f.run_id]) for f in followers
            if f.seqs != list(range(1, stored[f.run_id] + 1))}  # fmt: skip
    assert not lost
    # A run that ended after its old process had exited was followed through that
    # process until it stopped: its client must have resumed on the other serve. (A
    # run that ended during the shutdown grace was rightly finished on the old one.)
    failed_over = [f for f in followers if f.done_at is not None and f.done_at > stopped_at]
    assert len(failed_over) >= len(followers) // 2, [(f.done_at, stopped_at) for f in followers]
    assert all(f.cut >= 1 and f.connects[-1][0] == OTHER for f in failed_over)
    assert all(last is not None for f in failed_over for _, last in f.connects[1:])
    assert [code for f in followers for code in f.server_errors] == []
    answers = [a for p in pollers for a in p.answers]
    assert answers and [a for a in answers if a[2] >= 500] == []
    assert {status for _, _, status in answers} == {200}
    failures = [f for p in pollers for f in p.failures]
    assert all(serve == RESTARTED and down_at - 1 <= t <= up_at + 1 for t, serve, _ in failures)
    assert _server_errors_logged(cluster, offsets) == []
    assert await checks.run_problems(cluster, runs) == []
    assert await checks.duplicate_problems(cluster) == []
    assert await checks.sidecar_drops(cluster) == {}
