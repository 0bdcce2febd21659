"""Audit log writer and the list of recorded actions (CONTRACTS.md).

Written in the same transaction as the change it records, so an audit row
exists exactly when the change does.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.tenancy.models import AuditLog


class Action(enum.StrEnum):
    ORG_CREATED = "org.created"
    MEMBER_INVITED = "member.invited"
    MEMBER_JOINED = "member.joined"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    INVITATION_REVOKED = "invitation.revoked"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    SIDECAR_TOKEN_CREATED = "sidecar_token.created"
    SIDECAR_TOKEN_REVOKED = "sidecar_token.revoked"
    PROJECT_CREATED = "project.created"
    PROJECT_UPDATED = "project.updated"
    PROJECT_DELETED = "project.deleted"
    PROD_OVERRIDE_ENABLED = "project.prod_override_enabled"
    PROD_OVERRIDE_DISABLED = "project.prod_override_disabled"
    RUN_CREATED = "run.created"
    RUN_CANCELED = "run.canceled"
    FINDING_TRIAGED = "finding.triaged"
    REPORT_GENERATED = "report.generated"
    REPORT_DOWNLOADED = "report.downloaded"
    RETENTION_DELETED = "retention.deleted"
    QUOTAS_UPDATED = "quotas.updated"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"


def record(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    action: Action,
    actor_user_id: uuid.UUID | None = None,
    actor_api_key_id: uuid.UUID | None = None,
    actor_label: str = "",
    target_type: str = "",
    target_id: uuid.UUID | str = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
) -> AuditLog:
    """Add one audit row to the caller's transaction (never commits)."""
    row = AuditLog(
        org_id=org_id,
        action=action.value,
        actor_user_id=actor_user_id,
        actor_api_key_id=actor_api_key_id,
        actor_label=actor_label[:320],
        target_type=target_type,
        target_id=str(target_id),
        detail=detail or {},
        ip=ip[:64],
    )
    session.add(row)
    return row


def record_by(
    session: AsyncSession,
    principal: Any,
    *,
    org_id: uuid.UUID,
    action: Action,
    target_type: str = "",
    target_id: uuid.UUID | str = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
) -> AuditLog:
    """:func:`record` with the actor taken from a ``Principal`` (user or API key)."""
    return record(
        session,
        org_id=org_id,
        action=action,
        actor_user_id=principal.user_id,
        actor_api_key_id=principal.api_key_id,
        actor_label=principal.label,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
        ip=ip,
    )
