"""Org API keys for the CLI and CI: minted once, stored as prefix + sha256, revocable.

A key never carries more power than the person (or key) that made it, so an
ADMIN cannot mint an OWNER key and, by the same rule, cannot revoke one.
Revocation is a timestamp that request authentication checks on every
call, so it takes effect on the very next request.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.errors import Forbidden, Gone
from cogumi.tenancy import audit, security
from cogumi.tenancy.deps import Member
from cogumi.tenancy.models import ApiKey, Role

KEY_KIND = "cgk"


def _within_reach(actor: Member, role: Role, verb: str) -> None:
    if role.rank > actor.role.rank:
        raise Forbidden(
            f"a {actor.role.value} may not {verb} a key with role {role.value}", field="role"
        )


async def create_api_key(
    session: AsyncSession, *, actor: Member, name: str, role: Role, ip: str = ""
) -> tuple[ApiKey, str]:
    """A new key and its plaintext (return it to the caller once; it is not kept)."""
    _within_reach(actor, role, "create")
    issued = security.issue_prefixed_token(KEY_KIND)
    key = ApiKey(
        id=uuid.uuid4(),
        org_id=actor.org_id,
        name=name,
        prefix=issued.prefix,
        key_hash=issued.hash,
        role=role,
        created_by=actor.user_id,
    )
    session.add(key)
    await session.flush()
    audit.record_by(
        session,
        actor.principal,
        org_id=actor.org_id,
        action=audit.Action.API_KEY_CREATED,
        target_type="api_key",
        target_id=key.id,
        detail={"name": name, "role": role.value, "prefix": issued.prefix},
        ip=ip,
    )
    return key, issued.plaintext


async def list_api_keys(session: AsyncSession, *, org_id: uuid.UUID) -> Sequence[ApiKey]:
    """Every key of the org, newest first, revoked ones included (they show when)."""
    return (
        await session.scalars(
            in_org(ApiKey, org_id).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        )
    ).all()


async def revoke_api_key(
    session: AsyncSession, *, actor: Member, key_id: uuid.UUID, ip: str = ""
) -> ApiKey:
    """Revoke now (audit ``api_key.revoked``); 410 if it already was."""
    key = await get_in_org(session, ApiKey, key_id, actor.org_id, what="API key")
    _within_reach(actor, key.role, "revoke")
    if key.revoked_at is not None:
        raise Gone("this API key is already revoked")
    key.revoked_at = utcnow()
    key.revoked_by = actor.user_id
    audit.record_by(
        session,
        actor.principal,
        org_id=actor.org_id,
        action=audit.Action.API_KEY_REVOKED,
        target_type="api_key",
        target_id=key.id,
        detail={"name": key.name, "prefix": key.prefix},
        ip=ip,
    )
    await session.flush()
    return key
