"""Request and response bodies of the tenancy API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import EmailStr, Field, StringConstraints

from cogumi.schemas import Input, Name, Output
from cogumi.tenancy.models import Role

Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]


class RegisterIn(Input):
    email: EmailStr = Field(max_length=320)
    password: Password
    display_name: Annotated[str, StringConstraints(max_length=120)] = ""
    org_name: Name | None = Field(default=None, description="Defaults to '<email>'s org'.")


class LoginIn(Input):
    email: EmailStr = Field(max_length=320)
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class UserOut(Output):
    id: uuid.UUID
    email: str
    display_name: str
    created_at: datetime


class OrgOut(Output):
    id: uuid.UUID
    name: str
    role: Role


class MeOut(Output):
    user: UserOut | None
    api_key_prefix: str | None = None
    current_org: OrgOut | None
    orgs: list[OrgOut]
    csrf_token: str | None = Field(
        default=None, description="Send as X-CSRF-Token on cookie-authenticated writes."
    )


DisplayName = Annotated[str, StringConstraints(max_length=120)]


class OrgCreateIn(Input):
    name: Name


class MemberOut(Output):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role
    joined_at: datetime


class RoleIn(Input):
    role: Role


class InvitationCreateIn(Input):
    email: EmailStr = Field(max_length=320)
    role: Role


class InvitationOut(Output):
    """A pending invitation as the org sees it; the token is never shown again."""

    id: uuid.UUID
    email: str
    role: Role
    invited_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime


class InvitationCreatedOut(InvitationOut):
    delivery: Literal["email", "link"] = Field(
        description="`email`: the link went out by SMTP and is not returned. "
        "`link`: no SMTP is configured; pass `invite_url` on yourself."
    )
    invite_url: str | None = Field(
        default=None, description="Only when `delivery` is `link`; shown this once."
    )


class InvitationPreviewOut(Output):
    org_name: str
    email: str
    role: Role
    expires_at: datetime


class AcceptIn(Input):
    """Anonymous callers create the invited account with these; signed-in callers send nothing."""

    password: Password | None = None
    display_name: DisplayName = ""


class ApiKeyCreateIn(Input):
    name: Name
    role: Role


class ApiKeyOut(Output):
    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    created_at: datetime
    created_by: uuid.UUID | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The key itself (`cgk_…`); shown this once, never again.")


class AuditItemOut(Output):
    id: uuid.UUID
    action: str
    actor_label: str
    actor_user_id: uuid.UUID | None
    actor_api_key_id: uuid.UUID | None
    target_type: str
    target_id: str
    detail: dict[str, Any]
    ip: str
    created_at: datetime


class AuditPageOut(Output):
    items: list[AuditItemOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next (older) page; null at the end."
    )
