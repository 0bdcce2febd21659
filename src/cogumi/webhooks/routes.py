"""Webhooks API (OWNER and ADMIN: ``tokens.manage``).

A webhook holds a signing secret and sends the org's findings to a URL
outside the product, so it is managed like API keys: by the roles that may
mint credentials. The secret is shown once, at creation or rotation.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from cogumi.tenancy.deps import AppSettings, DbSession, TokensManager
from cogumi.webhooks import service
from cogumi.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    WebhookWithSecretOut,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookWithSecretOut)
async def create_webhook(
    body: WebhookIn, member: TokensManager, session: DbSession, settings: AppSettings
) -> WebhookWithSecretOut:
    """Add an endpoint. Copy ``secret`` now: it signs every delivery and is not shown again."""
    hook, secret = await service.create_webhook(
        session, member=member, body=body, settings=settings
    )
    return WebhookWithSecretOut(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookOut])
async def list_webhooks(member: TokensManager, session: DbSession) -> list[WebhookOut]:
    """The org's endpoints (never their secrets)."""
    hooks = await service.list_webhooks(session, org_id=member.org_id)
    return [WebhookOut.model_validate(h) for h in hooks]


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(
    webhook_id: uuid.UUID, member: TokensManager, session: DbSession
) -> WebhookOut:
    hook = await service.get_webhook(session, org_id=member.org_id, webhook_id=webhook_id)
    return WebhookOut.model_validate(hook)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut | WebhookWithSecretOut,
    responses={200: {"description": "With `rotate_secret`: includes the new `secret`, once."}},
)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookPatch,
    member: TokensManager,
    session: DbSession,
    settings: AppSettings,
) -> WebhookOut | WebhookWithSecretOut:
    """Change the URL, events, filter, format or enabled flag; or rotate the secret."""
    hook = await service.get_webhook(session, org_id=member.org_id, webhook_id=webhook_id)
    hook, secret = await service.update_webhook(
        session, member=member, hook=hook, body=body, settings=settings
    )
    out = WebhookOut.model_validate(hook)
    return out if secret is None else WebhookWithSecretOut(**out.model_dump(), secret=secret)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: uuid.UUID, member: TokensManager, session: DbSession) -> None:
    """Remove the endpoint, its pending deliveries and its delivery log."""
    hook = await service.get_webhook(session, org_id=member.org_id, webhook_id=webhook_id)
    await service.delete_webhook(session, member=member, hook=hook)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    webhook_id: uuid.UUID, member: TokensManager, session: DbSession
) -> DeliveryList:
    """The latest 200 deliveries, newest first, each with every attempt's outcome."""
    hook = await service.get_webhook(session, org_id=member.org_id, webhook_id=webhook_id)
    rows = await service.list_deliveries(session, hook=hook)
    return DeliveryList(items=[DeliveryOut.model_validate(r) for r in rows])
