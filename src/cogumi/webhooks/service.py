"""Webhook endpoints (create, list, update, delete) and the events they receive.

``run_finished`` and ``finding_created`` are the only calls other areas
make: each adds delivery rows to the caller's transaction, so nothing is
sent for a change that is rolled back, and the dispatcher is woken once the
transaction commits. Services never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.errors import InvalidInput
from cogumi.findings.models import Finding
from cogumi.projects import urlguard
from cogumi.projects.models import Project
from cogumi.runs.models import Run, RunStatus, Severity
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import Member
from cogumi.webhooks import payloads, signing
from cogumi.webhooks.dispatch import retry_policy, wake_after_commit
from cogumi.webhooks.models import EventType, Webhook, WebhookDelivery
from cogumi.webhooks.schemas import WebhookIn, WebhookPatch

MAX_WEBHOOKS_PER_ORG = 20
DELIVERY_LOG_LIMIT = 200
SEVERITY_RANK = {s.value: rank for rank, s in enumerate(reversed(list(Severity)))}
RUN_EVENTS = {RunStatus.completed: EventType.run_completed, RunStatus.failed: EventType.run_failed,
              RunStatus.stopped_quota: EventType.run_failed}  # fmt: skip


async def check_url(url: str, *, settings: Settings) -> None:
    """The outbound-URL guard, as a 422 naming ``url``."""
    try:
        await urlguard.check(url, allow_private=settings.private_targets_allowed)
    except urlguard.UrlRefused as exc:
        raise InvalidInput("url", exc.reason) from exc


async def create_webhook(
    session: AsyncSession, *, member: Member, body: WebhookIn, settings: Settings
) -> tuple[Webhook, str]:
    """A new endpoint and its signing secret (returned once, stored encrypted)."""
    await check_url(body.url, settings=settings)
    count = len((await session.scalars(in_org(Webhook, member.org_id))).all())
    if count >= MAX_WEBHOOKS_PER_ORG:
        raise InvalidInput(
            "url", f"an organisation can have at most {MAX_WEBHOOKS_PER_ORG} webhooks"
        )
    secret = signing.new_secret()
    hook = Webhook(
        id=uuid.uuid4(),
        org_id=member.org_id,
        name=body.name,
        url=body.url,
        events=[e.value for e in body.events],
        min_severity=body.min_severity.value,
        format=body.format,
        enabled=body.enabled,
        secret_encrypted=signing.encrypt_secret(secret, secret_key=settings.resolved_secret_key()),
        secret_prefix=signing.secret_preview(secret),
        created_by=member.user_id,
    )
    session.add(hook)
    await session.flush()
    _audit(session, member, Action.WEBHOOK_CREATED, hook, {"url": hook.url, "events": hook.events})
    return hook, secret


async def list_webhooks(session: AsyncSession, *, org_id: uuid.UUID) -> Sequence[Webhook]:
    query = in_org(Webhook, org_id).order_by(Webhook.created_at, Webhook.id)
    return (await session.scalars(query)).all()


async def get_webhook(
    session: AsyncSession, *, org_id: uuid.UUID, webhook_id: uuid.UUID
) -> Webhook:
    return await get_in_org(session, Webhook, webhook_id, org_id, what="webhook")


async def update_webhook(
    session: AsyncSession, *, member: Member, hook: Webhook, body: WebhookPatch, settings: Settings
) -> tuple[Webhook, str | None]:
    """Apply the changes; with ``rotate_secret`` also a new secret (returned once)."""
    try:
        changes = body.changes()
    except ValueError as exc:
        raise InvalidInput(str(exc), "may not be null") from exc
    if "url" in changes:
        await check_url(changes["url"], settings=settings)
    for name, value in changes.items():
        if name == "events":
            value = [e.value for e in value]
        elif name == "min_severity":
            value = value.value
        setattr(hook, name, value)
    secret = None
    if body.rotate_secret:
        secret = signing.new_secret()
        key = settings.resolved_secret_key()
        hook.secret_encrypted = signing.encrypt_secret(secret, secret_key=key)
        hook.secret_prefix = signing.secret_preview(secret)
    hook.updated_at = utcnow()
    await session.flush()
    detail = {"changes": sorted(changes), "secret_rotated": body.rotate_secret}
    _audit(session, member, Action.WEBHOOK_UPDATED, hook, detail)
    return hook, secret


async def delete_webhook(session: AsyncSession, *, member: Member, hook: Webhook) -> None:
    """Remove the endpoint; its pending deliveries and log go with it."""
    _audit(session, member, Action.WEBHOOK_DELETED, hook, {"url": hook.url})
    await session.delete(hook)
    await session.flush()


async def list_deliveries(session: AsyncSession, *, hook: Webhook) -> Sequence[WebhookDelivery]:
    """The endpoint's latest deliveries, newest first."""
    query = (
        in_org(WebhookDelivery, hook.org_id)
        .where(WebhookDelivery.webhook_id == hook.id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(DELIVERY_LOG_LIMIT)
    )
    return (await session.scalars(query)).all()


def _audit(
    session: AsyncSession, member: Member, action: Action, hook: Webhook, detail: dict[str, object]
) -> None:
    record_by(session, member.principal, org_id=member.org_id, action=action,
              target_type="webhook", target_id=hook.id, detail=detail)  # fmt: skip


# --- events ------------------------------------------------------------------


def _wants(hook: Webhook, event_type: EventType, severity: Severity | None) -> bool:
    if not hook.enabled or event_type.value not in hook.events:
        return False
    if severity is None:
        return True
    return SEVERITY_RANK[severity.value] >= SEVERITY_RANK.get(hook.min_severity, 0)


async def _emit(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    event_type: EventType,
    data: dict[str, object],
    severity: Severity | None = None,
) -> int:
    """One delivery row per interested endpoint of the org; returns how many."""
    hooks = [
        h for h in await list_webhooks(session, org_id=org_id) if _wants(h, event_type, severity)
    ]
    if not hooks:
        return 0
    event_id = uuid.uuid4()
    doc = payloads.document(event_id=event_id, event_type=event_type, org_id=org_id, data=data)
    attempts, backoff = retry_policy(session)
    for hook in hooks:
        session.add(WebhookDelivery(org_id=org_id, webhook_id=hook.id, event_id=event_id,
                                    event_type=event_type, payload=doc, max_attempts=attempts,
                                    backoff_sec=backoff, next_attempt_at=utcnow()))  # fmt: skip
    await session.flush()
    wake_after_commit(session)
    return len(hooks)


async def _project(session: AsyncSession, project_id: uuid.UUID, org_id: uuid.UUID) -> Project:
    return await get_in_org(session, Project, project_id, org_id, what="project")


async def run_finished(session: AsyncSession, *, run: Run) -> int:
    """``run.completed`` / ``run.failed`` (also for a quota stop); a cancel sends nothing."""
    event_type = RUN_EVENTS.get(run.status)
    if event_type is None:
        return 0
    project = await _project(session, run.project_id, run.org_id)
    return await _emit(session, org_id=run.org_id, event_type=event_type,
                       data=payloads.run_data(run, project))  # fmt: skip


async def finding_created(session: AsyncSession, *, finding: Finding) -> int:
    """``finding.created`` to endpoints whose minimum severity it reaches."""
    project = await _project(session, finding.project_id, finding.org_id)
    return await _emit(session, org_id=finding.org_id, event_type=EventType.finding_created,
                       data=payloads.finding_data(finding, project), severity=finding.severity)  # fmt: skip
