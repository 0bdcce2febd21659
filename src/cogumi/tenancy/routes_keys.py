"""Org API keys for the CLI and CI (OWNER and ADMIN). The key is shown once, at creation."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status

from cogumi.tenancy import service_keys
from cogumi.tenancy.cookies import client_ip
from cogumi.tenancy.deps import DbSession, TokensManager
from cogumi.tenancy.schemas import ApiKeyCreatedOut, ApiKeyCreateIn, ApiKeyOut

router = APIRouter(prefix="/api-keys", tags=["api keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreatedOut)
async def create_api_key(
    body: ApiKeyCreateIn, request: Request, session: DbSession, member: TokensManager
) -> ApiKeyCreatedOut:
    """Mint a key with a role no higher than yours (403 otherwise). Send it as
    ``Authorization: Bearer <key>``; copy it now, it is not shown again.
    """
    key, plaintext = await service_keys.create_api_key(
        session, actor=member, name=body.name, role=body.role, ip=client_ip(request)
    )
    return ApiKeyCreatedOut(**ApiKeyOut.model_validate(key).model_dump(), key=plaintext)


@router.get("", response_model=list[ApiKeyOut])
async def list_api_keys(session: DbSession, member: TokensManager) -> list[ApiKeyOut]:
    """Every key of the current org, newest first, revoked ones included; never the key."""
    keys = await service_keys.list_api_keys(session, org_id=member.org_id)
    return [ApiKeyOut.model_validate(key) for key in keys]


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={410: {"description": "Already revoked."}},
)
async def revoke_api_key(
    key_id: uuid.UUID, request: Request, session: DbSession, member: TokensManager
) -> None:
    """Revoke a key; the very next request made with it gets 401."""
    await service_keys.revoke_api_key(session, actor=member, key_id=key_id, ip=client_ip(request))
