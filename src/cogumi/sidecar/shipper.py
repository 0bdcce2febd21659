"""Getting events to the ingest API without ever losing one silently.

Events pass a local throttle (N per window per token, one
``policy.violation`` per window when it bites), wait in a bounded in-memory
buffer, and leave in batches. A batch keeps its ``batch_id`` across retries so
the API stores it once; retries back off exponentially with jitter and honour
``Retry-After``; 401/403 stop shipping (loudly) while the proxy keeps serving.
Every event that does not make it is counted under a reason, and the counters
go out with each heartbeat.

Each batch also carries a *watermark*: an instant such that every exchange
that started before it has completed and is in this batch or an earlier one.
It is held back by exchanges still in flight (the proxy reports each one as it
opens) and by events still waiting in the buffer, so a slow upstream call
never lets the engine think a step's evidence is complete. With nothing to
ship, a watermark-only batch goes out every ``batch_flush_ms`` while the API
says a campaign is running, else once per heartbeat interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from cogumi import __version__
from cogumi.sidecar.apiclient import ApiClient, ApiError, ApiResponse
from cogumi.sidecar.core import Exchange, Policy, exchange_event, iso_ts, policy_event
from cogumi.sidecar.options import SidecarOptions

log = logging.getLogger("cogumi.sidecar")
event_log = logging.getLogger("cogumi.sidecar.events")

RETRY_BASE_SEC = 0.25
RETRY_MAX_SEC = 30.0
RETRY_AFTER_MAX_SEC = 300.0
MASKED_LOG_EVERY_SEC = 300.0

BUILD_BATCH = 64
"""Admitted exchanges whose events are built together (see :meth:`Shipper.build_pending`)."""
BUILD_DELAY_SEC = 0.05
"""The longest an admitted exchange waits, unredacted, for its event to be built."""

BuildEvent = Callable[[Exchange, Policy], dict[str, Any]]


@dataclass(slots=True)
class _Pending:
    """An admitted exchange in the buffer whose event is not built yet."""

    exchange: Exchange
    policy: Policy
    build: BuildEvent


@dataclass
class Counters:
    sent: int = 0
    batches_sent: int = 0
    ingest_failures: int = 0
    masked_by_api: int = 0  # secrets the API found in the clear in what was sent
    dropped: Counter[str] = field(default_factory=Counter)
    _per_second: deque[list[int]] = field(default_factory=deque)

    def seen(self, now: float) -> None:
        second = int(now)
        if self._per_second and self._per_second[-1][0] == second:
            self._per_second[-1][1] += 1
        else:
            self._per_second.append([second, 1])
            self._trim(second)  # a new second: the oldest may have left the minute

    def _trim(self, second: int) -> None:
        while self._per_second and self._per_second[0][0] <= second - 60:
            self._per_second.popleft()

    def events_per_minute(self, now: float) -> int:
        self._trim(int(now))
        return sum(n for _, n in self._per_second)


@dataclass
class Throttle:
    """Fixed window per token: ``limit`` events, then drops until it rolls over."""

    limit: int
    window_sec: float
    started: float = 0.0
    count: int = 0
    violation_sent: bool = False

    def admit(self, now: float) -> tuple[bool, bool]:
        """(admitted, first drop of this window)."""
        if now - self.started >= self.window_sec:
            self.started, self.count, self.violation_sent = now, 0, False
        if self.count < self.limit:
            self.count += 1
            return True, False
        first = not self.violation_sent
        self.violation_sent = True
        return False, first


class Shipper:
    """Buffer + batch loop + heartbeat + config refresh, one per sidecar."""

    def __init__(self, options: SidecarOptions, client: ApiClient | None = None) -> None:
        self.options = options
        self._ships = options.ships
        self.client = client or ApiClient()
        self.counters = Counters()
        self.throttle = Throttle(options.throttle_per_window, options.throttle_window_sec)
        # (start time of what the event records, event): the start holds the watermark back.
        # The newest entries may be exchanges whose events are not built yet (_Pending).
        self.buffer: deque[tuple[float, dict[str, Any] | _Pending]] = deque()
        self.pending = 0  # how many of the buffer's last entries are _Pending
        self._build_timer: asyncio.TimerHandle | None = None
        self.in_flight = 0
        self.open_exchanges: dict[int, float] = {}  # id(exchange) -> its start
        self.watermark = 0.0
        self.run_active = False
        self.stopped_reason: str | None = None
        self.state = "starting"
        self.started_at = time.time()
        # This process among others that may share the token (replicas): the server
        # keeps status, drop counts and watermark per instance.
        self.instance_id = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._masked_logged_at = -math.inf

    # --- intake (sync, called from the proxy for every exchange) ----------------
    def opened(self, exchange: Exchange) -> None:
        """The proxy started an exchange: the watermark waits for it."""
        self.open_exchanges[id(exchange)] = exchange.ts

    def submit(
        self, exchange: Exchange, policy: Policy, build: BuildEvent = exchange_event
    ) -> None:
        """Queue the event of a finished exchange (and release its hold on the watermark).

        Throttle first, then build the event: detection and redaction are the
        costly part, and an exchange the throttle drops is never shipped anyway.
        Admitted exchanges are built :data:`BUILD_BATCH` at a time, or after
        :data:`BUILD_DELAY_SEC`, whichever comes first: the detector's code and
        tables stay hot in the CPU's caches for a run of events instead of being
        evicted by the proxy's between every two (a third less CPU per recorded
        exchange, docs/performance.md)."""
        try:
            now = time.time()
            self.counters.seen(now)
            if not self._ships:
                event = build(exchange, policy)
                event_log.info("%s", json.dumps(event, separators=(",", ":")))
                return
            admitted, first_drop = self.throttle.admit(now)
            if not admitted:
                self.counters.dropped["throttled"] += 1
                if first_drop:
                    self._enqueue(self._throttle_event(), now)
                return
            if self.stopped_reason or self.queued >= self.options.buffer_max_events:
                self._enqueue({}, now)  # counted under its reason, no need to build it
                return
            if self._enqueue(_Pending(exchange, policy, build), exchange.ts):
                self._pending_added()
        finally:
            self.open_exchanges.pop(id(exchange), None)

    def _pending_added(self) -> None:
        self.pending += 1
        if self.pending >= BUILD_BATCH:
            self.build_pending()
        elif self._build_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a direct call): build now
                self.build_pending()
            else:
                self._build_timer = loop.call_later(BUILD_DELAY_SEC, self.build_pending)

    def build_pending(self) -> None:
        """Build the events of the buffered exchanges that have none yet (the newest
        entries), in order. One that fails to build is counted under ``build_failed``."""
        if self._build_timer is not None:
            self._build_timer.cancel()
            self._build_timer = None
        self.pending = 0
        waiting: list[tuple[float, _Pending]] = []
        while self.buffer and isinstance(self.buffer[-1][1], _Pending):
            started, pending = self.buffer.pop()
            waiting.append((started, cast(_Pending, pending)))
        for started, item in reversed(waiting):
            try:
                event = item.build(item.exchange, item.policy)
            except Exception as exc:  # one broken event never takes the others with it
                self.counters.dropped["build_failed"] += 1
                log.error("building an event failed (%s); counted as dropped", type(exc).__name__)
                continue
            self.buffer.append((started, event))
        if not self.buffer:
            self._wake.clear()
            if not self.in_flight:
                self._drained.set()

    def _throttle_event(self) -> dict[str, Any]:
        limit, window = self.throttle.limit, self.throttle.window_sec
        return policy_event(
            "ingest_throttled",
            f"more than {limit} events in {window:g}s: "
            "the excess is dropped and counted until the window ends",
            limit=limit,
            window_sec=window,
        )

    def _enqueue(self, event: dict[str, Any] | _Pending, started: float) -> bool:
        """Buffer ``event``, or count it as dropped; True when it was buffered."""
        if self.stopped_reason:
            self.counters.dropped[self.stopped_reason] += 1
            return False
        if len(self.buffer) + self.in_flight >= self.options.buffer_max_events:
            self.counters.dropped["buffer_full"] += 1
            return False
        if self.pending and not isinstance(event, _Pending):
            self.build_pending()  # built events stay in order ahead of this one
        self.buffer.append((started, event))
        self._drained.clear()
        self._wake.set()
        if len(self.buffer) >= self.options.batch_max_events:
            self._full.set()
        return True

    @property
    def queued(self) -> int:
        return len(self.buffer) + self.in_flight

    # --- the batch loop -----------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle_interval()):
                    await self._wake.wait()
            except TimeoutError:
                await self._ship_watermark()
                continue
            if not self._closing and len(self.buffer) < self.options.batch_max_events:
                try:
                    async with asyncio.timeout(self.options.batch_flush_ms / 1000):
                        await self._full.wait()
                except TimeoutError:
                    pass
            await self._ship_one_batch()

    def _idle_interval(self) -> float:
        """How long an empty buffer waits before a watermark-only batch."""
        if self.run_active:
            return self.options.batch_flush_ms / 1000
        return self.options.heartbeat_interval

    def next_watermark(self, now: float | None = None) -> float:
        """The latest instant before which everything seen has been cut into a batch:
        not past an exchange in flight nor an event still in the buffer. Never moves back."""
        candidates = [time.time() if now is None else now, *self.open_exchanges.values()]
        if self.buffer:
            candidates.append(min(started for started, _ in self.buffer))
        self.watermark = max(self.watermark, min(candidates))
        return self.watermark

    async def _ship_one_batch(self) -> None:
        if self.pending:
            self.build_pending()
        size = min(len(self.buffer), self.options.batch_max_events)
        events = [cast(dict[str, Any], self.buffer.popleft()[1]) for _ in range(size)]
        if len(self.buffer) < self.options.batch_max_events:
            self._full.clear()
        if not self.buffer:
            self._wake.clear()
        if not events:
            await self._ship_watermark()
            return
        watermark = self.next_watermark()
        self.in_flight = len(events)
        try:
            await self._deliver(events, watermark)
        finally:
            self.in_flight = 0
            if not self.buffer:
                self._drained.set()

    async def _ship_watermark(self) -> None:
        """A batch without events: one attempt, a fresher one replaces it if it fails."""
        if self.stopped_reason or self.buffer or self.in_flight:
            return
        body = self._body([], self.next_watermark())
        await self._attempt(body, 0, 0)

    def _body(self, events: list[dict[str, Any]], watermark: float) -> dict[str, Any]:
        return {
            "project_id": self.options.project_id,
            "run_id": None,
            "sidecar_version": __version__,
            "instance_id": self.instance_id,
            "batch_id": str(uuid.uuid4()),
            "events": events,
            "watermark": iso_ts(watermark),
        }

    async def _deliver(self, events: list[dict[str, Any]], watermark: float) -> None:
        body = self._body(events, watermark)
        attempt = 0
        while True:
            delay = await self._attempt(body, len(events), attempt)
            if delay is None:
                return
            attempt += 1
            await asyncio.sleep(delay)

    async def _attempt(self, body: dict[str, Any], count: int, attempt: int) -> float | None:
        """One POST; returns the delay before retrying, or None when done with it."""
        url = f"{self.options.ingest_url}/api/ingest/events"
        try:
            response = await self.client.post(url, headers=self._auth(), payload=body)
        except ApiError as exc:
            return self._retry_later(f"ingest unreachable: {type(exc).__name__}", attempt)
        status = response.status_code
        if 200 <= status < 300:
            self._accepted(response, count)
            return None
        if status in (401, 403):
            self._stop("auth_rejected", status, count)
            return None
        if status == 429:
            self.counters.ingest_failures += 1
            self.state = "throttled_by_api"
            return _retry_after(response) or _backoff(attempt)
        if status in (400, 413, 422):
            self.counters.dropped["rejected_by_api"] += count
            log.error("ingest refused a batch of %d events (%d): %s", count, status, response.text[:300])  # fmt: skip
            return None
        if status == 404:  # no such route: the URL, not the batch, is wrong
            why = (f"ingest answered 404 at {url}: check INGEST_URL, the API's base URL "
                   "(such as https://cogumi.example.com)")  # fmt: skip
            return self._retry_later(why, attempt)
        return self._retry_later(f"ingest answered {status}", attempt)

    def _auth(self) -> dict[str, str]:
        return {"X-Sidecar-Token": self.options.token or ""}

    def _accepted(self, response: ApiResponse, count: int) -> None:
        try:
            answer = response.json()
            accepted, dropped = int(answer.get("accepted", count)), int(answer.get("dropped", 0))
            self._note_run_active(answer.get("run_active"))
            self._note_masked(int(answer.get("redacted", 0)))
        except (ValueError, AttributeError, TypeError):
            accepted, dropped = count, 0
        self.counters.sent += accepted
        self.counters.batches_sent += 1
        if dropped:
            self.counters.dropped["dropped_by_api"] += dropped
        if self.state != "ok":
            log.info("shipping events to %s", self.options.ingest_url)
        self.state = "ok"

    def _note_masked(self, masked: int) -> None:
        """The API masked secrets this sidecar's redaction let through (it scans what a
        sidecar of another version sends): count them, and say so at most every
        MASKED_LOG_EVERY_SEC."""
        if masked <= 0:
            return
        self.counters.masked_by_api += masked
        now = time.monotonic()
        if now - self._masked_logged_at >= MASKED_LOG_EVERY_SEC:
            self._masked_logged_at = now
            log.warning(
                "the ingest API masked %d secret(s) this sidecar (version %s) sent in the "
                "clear (%d so far): its detector is behind the server's; upgrade the sidecar",
                masked, __version__, self.counters.masked_by_api,
            )  # fmt: skip

    def _note_run_active(self, value: object) -> None:
        """The API says whether a campaign runs; on a switch to running, refresh now."""
        active = value is True
        if active and not self.run_active:
            self._wake.set()  # the loop wakes, finds no events and ships a watermark
        self.run_active = active

    def _retry_later(self, why: str, attempt: int) -> float:
        self.counters.ingest_failures += 1
        if self.state != "retrying":
            log.warning("%s; events are buffered (%d queued) and retried", why, self.queued)
        self.state = "retrying"
        return _backoff(attempt)

    def _stop(self, reason: str, status: int, count: int) -> None:
        """The token was refused: stop shipping for good, keep proxying."""
        self.stopped_reason = reason
        self.state = f"stopped:{reason}"
        self.counters.dropped[reason] += count + len(self.buffer)
        self.buffer.clear()
        self.pending = 0
        if self._build_timer is not None:
            self._build_timer.cancel()
            self._build_timer = None
        self._wake.clear()
        self._drained.set()
        log.error(
            "ingest API refused the sidecar token (%d): event shipping STOPPED; the proxy keeps "
            "serving. Check SIDECAR_TOKEN (it may be revoked) and restart the sidecar.",
            status,
        )

    # --- heartbeat ------------------------------------------------------------------
    def heartbeat_body(self) -> dict[str, Any]:
        now = time.time()
        c = self.counters
        return {
            "sidecar_version": __version__,
            "project_id": self.options.project_id,
            "instance_id": self.instance_id,
            "started_at": self.started_at,
            "uptime_sec": round(now - self.started_at, 3),
            "state": self.state,
            "counters": {
                "sent": c.sent,
                "batches_sent": c.batches_sent,
                "queued": self.queued,
                "dropped": dict(c.dropped),
                "dropped_total": sum(c.dropped.values()),
                "events_per_minute": c.events_per_minute(now),
                "ingest_failures": c.ingest_failures,
                "masked_by_api": c.masked_by_api,
            },
        }

    async def heartbeat_once(self) -> bool:
        url = f"{self.options.ingest_url}/api/projects/{self.options.project_id}/sidecar/heartbeat"
        try:
            response = await self.client.post(
                url, headers=self._auth(), payload=self.heartbeat_body()
            )
        except ApiError as exc:
            log.debug("heartbeat failed: %s", type(exc).__name__)
            return False
        if response.status_code in (401, 403):
            log.error("heartbeat refused (%d): check SIDECAR_TOKEN", response.status_code)
        if response.is_success:
            with contextlib.suppress(ValueError, AttributeError):
                self._note_run_active(response.json().get("run_active"))
        return response.is_success

    async def heartbeat_loop(self) -> None:
        while True:
            await self.heartbeat_once()
            await asyncio.sleep(self.options.heartbeat_interval)

    # --- shutdown -------------------------------------------------------------------
    async def drain(self, within: float) -> None:
        """Flush what is buffered within ``within`` s; count the rest as dropped."""
        self._closing = True
        self._full.set()
        try:
            async with asyncio.timeout(within):
                await self._drained.wait()
        except TimeoutError:
            pass
        if self.queued:
            self.counters.dropped["shutdown"] += self.queued
            log.warning("shutdown: %d events could not be delivered in time", self.queued)
        if self.stopped_reason is None:
            self.state = "stopped"  # the last heartbeat says so: no longer holds the watermark

    async def aclose(self) -> None:
        await self.client.aclose()


def _backoff(attempt: int) -> float:
    ceiling = min(RETRY_MAX_SEC, RETRY_BASE_SEC * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


def _retry_after(response: ApiResponse) -> float | None:
    value = (response.header("retry-after") or "").strip()
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_MAX_SEC)
    except ValueError:
        return None
