"""Request and response bodies of the tenancy API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

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
