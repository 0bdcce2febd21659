"""The webhook dispatcher: sends due deliveries, retries with backoff, keeps the log.

Delivery rows are the queue (an outbox in the database), so a delivery
survives restarts and any ``serve`` process can send it. A dispatcher:

* runs in every ``serve`` and every ``cogumi worker``; is woken right after a
  transaction of its own process that added deliveries commits (so a run a
  worker ends is announced by that worker at once), and otherwise sweeps
  every ``webhook_sweep_interval_sec`` (retries; rows another process left);
* claims a due row with a conditional UPDATE and a lease, so two processes
  never send the same attempt, and a process that dies mid-send leaves a row
  that is picked up again when the lease lapses;
* checks the URL with the outbound-URL guard before every attempt, connects
  to the checked address and never follows a redirect (a 3xx is a failure);
* retries a failed attempt after ``backoff * 2**(attempt-1)`` seconds until
  the row's ``max_attempts`` are used, then marks it ``failed``;
* on close, lets the attempts in flight finish (up to the attempt timeout)
  and claims nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from cogumi import __version__
from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.projects import urlguard
from cogumi.tasks import cancel_and_wait, spawn
from cogumi.webhooks import payloads, signing
from cogumi.webhooks.models import DeliveryStatus, PayloadFormat, Webhook, WebhookDelivery

log = logging.getLogger(__name__)

CLAIM_BATCH = 20
LEASE_SEC = 120
PRUNE_EVERY_SEC = 600
DEFAULT_POLICY = (
    Settings.model_fields["webhook_max_attempts"].default,
    Settings.model_fields["webhook_retry_base_sec"].default,
)
_WAKE = "cogumi_webhook_wake"

# One dispatcher per database engine in this process; a committed session
# wakes the dispatcher of its own engine.
_dispatchers: dict[AsyncEngine, Dispatcher] = {}


def _due(now: Any) -> Any:
    pending = and_(
        WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now
    )
    stale = and_(
        WebhookDelivery.status == DeliveryStatus.sending, WebhookDelivery.lease_until < now
    )
    return or_(pending, stale)


@dataclass(frozen=True)
class Job:
    """One claimed attempt, detached from the database."""

    delivery_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    url: str
    format: PayloadFormat
    secret_encrypted: str
    enabled: bool


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.engine = engine
        self.wake = asyncio.Event()
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.webhook_timeout_sec),
            follow_redirects=False,
            trust_env=False,
        )
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._closing = False

    @property
    def policy(self) -> tuple[int, float]:
        return self.settings.webhook_max_attempts, self.settings.webhook_retry_base_sec

    def start(self) -> None:
        _dispatchers[self.engine] = self
        self._task = spawn(self._run_forever(), name="webhook-dispatcher")

    async def close(self) -> None:
        """Finish the attempts in flight (bounded by the attempt timeout), then stop."""
        _dispatchers.pop(self.engine, None)
        if self._task is not None:
            self._closing = True
            self.wake.set()
            with contextlib.suppress(TimeoutError, Exception):
                grace = self.settings.webhook_timeout_sec + 1
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
            # Cancelled again until it ends (a cancellation swallowed on the loop's
            # path must not hold the stop), and left behind with a warning after 10 s.
            await cancel_and_wait([self._task])
        await self.client.aclose()

    async def _run_forever(self) -> None:
        while not self._closing:
            self.wake.clear()
            wait = self.settings.webhook_sweep_interval_sec
            try:
                next_due = await self.run_once()
                if next_due is not None:
                    wait = min(wait, max(next_due, 0.01))
            except Exception:  # the loop must outlive any one bad sweep
                log.exception("webhook dispatch sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=wait)

    async def run_once(self) -> float | None:
        """Send every due delivery; seconds until the next one is due (None: none waits)."""
        while not self._closing and (jobs := await self._claim()):
            await asyncio.gather(*(self._attempt(job) for job in jobs))
        if self._closing:
            return None
        await self._prune()
        return await self._seconds_to_next()

    async def _claim(self) -> list[Job]:
        async with transaction(self.sessionmaker) as session:
            now = utcnow()
            ids = (await session.scalars(
                select(WebhookDelivery.id).where(_due(now))
                .order_by(WebhookDelivery.next_attempt_at).limit(CLAIM_BATCH)
            )).all()  # fmt: skip
            claimed = [i for i in ids if await self._take(session, i, now)]
            if not claimed:
                return []
            rows = await session.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id.in_(claimed))
            )
            return [_job(delivery, hook) for delivery, hook in rows.all()]

    async def _take(self, session: AsyncSession, delivery_id: uuid.UUID, now: Any) -> bool:
        result = await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, _due(now))
            .values(status=DeliveryStatus.sending, lease_until=now + timedelta(seconds=LEASE_SEC))
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def _attempt(self, job: Job) -> None:
        outcome = await self.send(job)
        await self._record(job, outcome)

    async def send(self, job: Job) -> Outcome:
        """One signed POST; never raises for a bad or unreachable receiver."""
        started = time.perf_counter()

        def done(ok: bool, status_code: int | None, error: str | None) -> Outcome:
            elapsed = round((time.perf_counter() - started) * 1000, 1)
            return Outcome(ok, status_code, error[:500] if error else None, elapsed)

        if not job.enabled:
            return done(False, None, "webhook is disabled")
        try:
            secret = signing.decrypt_secret(job.secret_encrypted, secret_key=self._key())
            target = await urlguard.check(
                job.url, allow_private=self.settings.private_targets_allowed
            )
        except (signing.SecretUnreadable, urlguard.UrlRefused) as exc:
            prefix = "blocked by the URL guard: " if isinstance(exc, urlguard.UrlRefused) else ""
            return done(False, None, prefix + str(exc))
        body = payloads.render_body(job.payload, fmt=job.format, base_url=self.settings.base_url)
        request = self.client.build_request(
            "POST", target.pinned_url, content=body, headers=self._headers(job, target, secret, body),
            extensions={"sni_hostname": target.parsed.host},
        )  # fmt: skip
        try:
            response = await self.client.send(request)
        except httpx.HTTPError as exc:
            return done(
                False, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            )
        code = response.status_code
        if 200 <= code < 300:
            return done(True, code, None)
        if 300 <= code < 400:
            return done(False, code, f"HTTP {code}: redirects are not followed")
        return done(False, code, f"HTTP {code}")

    def _key(self) -> str:
        return self.settings.resolved_secret_key()

    def _headers(
        self, job: Job, target: urlguard.Target, secret: str, body: bytes
    ) -> dict[str, str]:
        return {
            "Host": target.parsed.host_header,
            "Content-Type": "application/json",
            "User-Agent": f"cogumi-webhooks/{__version__}",
            "X-Cogumi-Event": job.event_type,
            "X-Cogumi-Event-Id": str(job.event_id),
            "X-Cogumi-Delivery": str(job.delivery_id),
            signing.SIGNATURE_HEADER: signing.sign(secret, body),
        }

    async def _record(self, job: Job, outcome: Outcome) -> None:
        async with transaction(self.sessionmaker) as session:
            row = await session.get(WebhookDelivery, job.delivery_id)
            if row is None:  # the webhook was deleted meanwhile
                return
            apply_outcome(row, outcome, disabled=not job.enabled)
        if row.status == DeliveryStatus.failed:
            log.warning("webhook delivery %s failed for good: %s", row.id, outcome.error)

    async def _seconds_to_next(self) -> float | None:
        async with self.sessionmaker() as session:
            earliest = await session.scalar(
                select(func.min(WebhookDelivery.next_attempt_at)).where(
                    WebhookDelivery.status == DeliveryStatus.pending
                )
            )
        if earliest is None:
            return None
        return (earliest - utcnow()).total_seconds()

    async def _prune(self) -> None:
        """Drop finished log rows past ``webhook_log_retention_days`` (at most every 10 min)."""
        if time.monotonic() - self._last_prune < PRUNE_EVERY_SEC:
            return
        self._last_prune = time.monotonic()
        cutoff = utcnow() - timedelta(days=self.settings.webhook_log_retention_days)
        finished = (DeliveryStatus.delivered, DeliveryStatus.failed)
        async with transaction(self.sessionmaker) as session:
            await session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.status.in_(finished), WebhookDelivery.created_at < cutoff
                )
            )


def _job(delivery: WebhookDelivery, hook: Webhook) -> Job:
    return Job(
        delivery_id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type.value,
        payload=delivery.payload,
        url=hook.url,
        format=hook.format,
        secret_encrypted=hook.secret_encrypted,
        enabled=hook.enabled,
    )


def apply_outcome(row: WebhookDelivery, outcome: Outcome, *, disabled: bool = False) -> None:
    """Count the attempt, log it, and decide: delivered, retry later, or failed."""
    now = utcnow()
    row.attempts += 1
    entry = {"n": row.attempts, "at": now.isoformat(), "status_code": outcome.status_code,
             "error": outcome.error, "duration_ms": outcome.duration_ms}  # fmt: skip
    row.attempt_log = [*row.attempt_log, entry]
    row.last_status_code = outcome.status_code
    row.last_error = outcome.error
    row.lease_until = None
    if outcome.ok:
        row.status, row.delivered_at = DeliveryStatus.delivered, now
    elif disabled or row.attempts >= row.max_attempts:
        row.status = DeliveryStatus.failed
    else:
        row.status = DeliveryStatus.pending
        row.next_attempt_at = now + timedelta(seconds=row.backoff_sec * 2 ** (row.attempts - 1))


# --- after-commit wake-up ----------------------------------------------------


def retry_policy(session: AsyncSession) -> tuple[int, float]:
    """(max attempts, first backoff) of the dispatcher serving this session's database."""
    dispatcher = _dispatchers.get(session.bind) if isinstance(session.bind, AsyncEngine) else None
    return dispatcher.policy if dispatcher is not None else DEFAULT_POLICY


def wake_after_commit(session: AsyncSession) -> None:
    """Wake this process's dispatcher once ``session`` commits (nothing on rollback)."""
    session.sync_session.info[_WAKE] = session.bind


@event.listens_for(Session, "after_commit")
def _wake(session: Session) -> None:
    engine = session.info.pop(_WAKE, None)
    dispatcher = _dispatchers.get(engine) if engine is not None else None
    if dispatcher is not None:
        dispatcher.wake.set()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_WAKE, None)


async def start_dispatcher(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> Dispatcher:
    dispatcher = Dispatcher(settings=settings, sessionmaker=sessionmaker, engine=engine)
    dispatcher.start()
    return dispatcher
