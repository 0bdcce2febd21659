"""Prometheus metrics, one registry per app (several apps can live in one process).

- ``cogumi_http_requests_total{method,route,status}`` and a duration histogram,
  labelled by route *template* (``/api/runs/{run_id}``), never the raw path;
- ``cogumi_ingest_events_total{outcome="accepted"|"dropped"}``;
- ``cogumi_sidecar_dropped_events_total{reason}``: events sidecars dropped
  before sending them (``throttled``, ``buffer_full``, ...), as their heartbeats
  report them to this process;
- ``cogumi_runs{status="queued"|"running"}``: read from the database at
  scrape time, so it is right whichever process queued or runs them;
- ``cogumi_run_duration_seconds{status}`` and ``cogumi_runs_finished_total{status}``
  for runs this process's worker ended;
- ``cogumi_lease_renewals_total{outcome="renewed"|"lost"|"error"}`` and
  ``cogumi_reaped_runs_total{action="requeued"|"failed"|"resent"}``: what this
  process's worker and reaper did with run leases;
- ``cogumi_sse_clients``: live streams open on this process.

``serve`` exposes them at ``/metrics``; ``cogumi worker`` on its own
``--metrics-listen`` address (:mod:`cogumi.ops.metrics_server`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.runs.lease import Reaped
from cogumi.runs.models import Run, RunStatus

T = TypeVar("T")
RUN_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800)
# The reasons `cogumi sidecar` and `cogumi sink` count drops under (docs/sidecar.md).
SIDECAR_DROP_REASONS = frozenset(
    {"throttled", "buffer_full", "auth_rejected", "rejected_by_api", "dropped_by_api",
     "shutdown", "build_failed", "unspecified"}
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("cogumi_http_requests", "HTTP requests served.",
                                ["method", "route", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("cogumi_http_request_duration_seconds",
                                 "Time to serve a request.", ["method", "route"], registry=r)  # fmt: skip
        self.ingest = Counter("cogumi_ingest_events", "Sidecar events by outcome.",
                              ["outcome"], registry=r)  # fmt: skip
        self.runs = Gauge("cogumi_runs", "Runs waiting in the queue or running.",
                          ["status"], registry=r)  # fmt: skip
        self.run_duration = Histogram("cogumi_run_duration_seconds", "Duration of ended runs.",
                                      ["status"], buckets=RUN_BUCKETS, registry=r)  # fmt: skip
        self.finished = Counter("cogumi_runs_finished", "Runs this process ended, by outcome.",
                                ["status"], registry=r)  # fmt: skip
        self.renewals = Counter("cogumi_lease_renewals", "Run lease renewals by outcome.",
                                ["outcome"], registry=r)  # fmt: skip
        self.reaps = Counter("cogumi_reaped_runs", "Runs the reaper took back, by action.",
                             ["action"], registry=r)  # fmt: skip
        self.sse = Gauge("cogumi_sse_clients", "Open live streams.", registry=r)
        self.sidecar_drops = Counter("cogumi_sidecar_dropped_events",
                                     "Events sidecars dropped before sending, by reason.",
                                     ["reason"], registry=r)  # fmt: skip

    def request(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def sidecar_dropped(self, by_reason: Mapping[str, int]) -> None:
        """Drops a heartbeat reported as new; an unknown reason (a sidecar's own word,
        so unbounded) is counted as ``other`` to keep the label set small."""
        for reason, count in by_reason.items():
            label = reason if reason in SIDECAR_DROP_REASONS else "other"
            self.sidecar_drops.labels(label).inc(count)

    def ingested(self, *, accepted: int, dropped: int) -> None:
        self.ingest.labels("accepted").inc(accepted)
        self.ingest.labels("dropped").inc(dropped)

    # The run worker's observer interface (cogumi.runs.worker.WorkerObserver).

    def run_ended(self, run: Run) -> None:
        self.finished.labels(run.status.value).inc()
        if run.started_at is not None and run.ended_at is not None:
            seconds = (run.ended_at - run.started_at).total_seconds()
            self.run_duration.labels(run.status.value).observe(max(0.0, seconds))

    def lease_renewed(self, outcome: str) -> None:
        self.renewals.labels(outcome).inc()

    def reaped(self, reaped: Reaped) -> None:
        self.reaps.labels("requeued").inc(len(reaped.requeued))
        self.reaps.labels("failed").inc(len(reaped.failed))
        self.reaps.labels("resent").inc(len(reaped.resent))

    async def sse_client(self, messages: AsyncIterator[T]) -> AsyncIterator[T]:
        """Count a live stream for as long as it is open."""
        self.sse.inc()
        try:
            async for message in messages:
                yield message
        finally:
            self.sse.dec()

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Queue depth and running runs, from the runs table (indexed on status)."""
        async with sessionmaker() as session:
            rows = await session.execute(
                select(Run.status, func.count())
                .where(Run.status.in_((RunStatus.queued, RunStatus.running)))
                .group_by(Run.status)
            )
            counts = {status: int(n) for status, n in rows}
        for status in (RunStatus.queued, RunStatus.running):
            self.runs.labels(status.value).set(counts.get(status, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
