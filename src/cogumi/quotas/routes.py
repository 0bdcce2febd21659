"""Quota API (``/api/quotas``) and the scheduler's retention hook (``/api/cron/cleanup``)."""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.errors import InvalidInput, NotFound, Unauthenticated
from cogumi.quotas import retention, service
from cogumi.quotas.schemas import CleanupOut, QuotasOut, QuotasPatch, QuotaUsage
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import AppSettings, DbSession, OrgManager, Reader

router = APIRouter(tags=["quotas"])
cron_router = APIRouter(tags=["operations"])


async def _usage(session: AsyncSession, settings: Settings, org_id: uuid.UUID) -> QuotasOut:
    items = await service.usage(session, org_id=org_id, settings=settings)
    return QuotasOut(items=[QuotaUsage(**item) for item in items])


@router.get("/quotas", response_model=QuotasOut)
async def get_quotas(member: Reader, session: DbSession, settings: AppSettings) -> QuotasOut:
    """Each quota of your organisation with its limit, current use and percentage."""
    return await _usage(session, settings, member.org_id)


@router.patch("/quotas", response_model=QuotasOut)
async def patch_quotas(
    body: QuotasPatch, member: OrgManager, session: DbSession, settings: AppSettings
) -> QuotasOut:
    """Override your organisation's limits (owner only); ``null`` restores a default."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInput("body", "send at least one quota to change")
    changed = await service.set_overrides(session, org_id=member.org_id, changes=changes)
    if changed:
        record_by(
            session, member.principal, org_id=member.org_id, action=Action.QUOTAS_UPDATED,
            target_type="organization", target_id=member.org_id, detail={"changed": changed},
        )  # fmt: skip
    return await _usage(session, settings, member.org_id)


def check_cron_secret(settings: AppSettings, sent: str | None) -> None:
    """404 when no secret is configured (the route is off); 401 unless it matches."""
    if settings.cron_secret is None:
        raise NotFound("not found")
    expected = settings.cron_secret.get_secret_value().encode()
    if not sent or not hmac.compare_digest(sent.encode(), expected):
        raise Unauthenticated("missing or wrong X-Cron-Secret header")


@cron_router.post("/cron/cleanup", response_model=CleanupOut)
async def cron_cleanup(
    request: Request,
    settings: AppSettings,
    x_cron_secret: Annotated[
        str | None, Header(description="The deployment's cron secret.")
    ] = None,
) -> CleanupOut:
    """Run retention now; counts deleted per org. Off (404) unless ``COGUMI_CRON_SECRET`` is set.

    When another cleanup is already running, answers at once with ``ran: false``.
    """
    check_cron_secret(settings, x_cron_secret)
    result = await retention.cleanup(sessionmaker=request.app.state.sessionmaker, settings=settings)
    return CleanupOut(**result.as_json())
