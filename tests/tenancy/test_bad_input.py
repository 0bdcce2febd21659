"""Bad input on every tenancy route: 422 in the one shape naming the field, nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.tenancy.models import ApiKey, AuditLog, Invitation, Membership, Organization, User
from tests.factories import PASSWORD, Accounts

LONG = "x" * 121

# (method, path, JSON body, field the error must name). "{me}" is the caller's user id.
CASES: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/orgs", {}, "name"),
    ("POST", "/api/orgs", {"name": 5}, "name"),
    ("POST", "/api/orgs", {"name": "   "}, "name"),
    ("POST", "/api/orgs", {"name": LONG}, "name"),
    ("POST", "/api/orgs", {"name": "ok", "owner": "me"}, "owner"),
    ("POST", "/api/orgs/not-a-uuid/switch", None, "org_id"),
    ("PATCH", "/api/members/{me}", {"role": "GOD"}, "role"),
    ("PATCH", "/api/members/{me}", {"role": "owner"}, "role"),
    ("PATCH", "/api/members/{me}", {"role": "ADMIN", "why": "x"}, "why"),
    ("PATCH", "/api/members/12345", {"role": "ADMIN"}, "user_id"),
    ("DELETE", "/api/members/not-a-uuid", None, "user_id"),
    ("POST", "/api/invitations", {"email": "nope", "role": "VIEWER"}, "email"),
    ("POST", "/api/invitations", {"email": "a" * 320 + "@x.com", "role": "VIEWER"}, "email"),
    ("POST", "/api/invitations", {"email": "a@example.com", "role": 3}, "role"),
    ("POST", "/api/invitations", {"email": "a@example.com"}, "role"),
    ("DELETE", "/api/invitations/not-a-uuid", None, "invitation"),
    ("GET", "/api/invitations/short", None, "invitation"),
    ("POST", "/api/invitations/short/accept", {"password": PASSWORD}, "token"),
    ("POST", "/api/api-keys", {"name": "", "role": "VIEWER"}, "name"),
    ("POST", "/api/api-keys", {"name": LONG, "role": "VIEWER"}, "name"),
    ("POST", "/api/api-keys", {"name": "k", "role": ["ADMIN"]}, "role"),
    ("POST", "/api/api-keys", {"name": "k", "role": "VIEWER", "key": "cgk_x"}, "key"),
    ("DELETE", "/api/api-keys/123", None, "key_id"),
    ("POST", "/api/auth/login", {"email": "a@example.com"}, "password"),
    ("POST", "/api/auth/login", {"email": "a@example.com", "password": "p" * 257}, "password"),
    ("POST", "/api/auth/register", {"email": "a@example.com", "password": "short"}, "password"),
]


async def _counts(sessionmaker: async_sessionmaker[AsyncSession], org_id: uuid.UUID) -> list[int]:
    """Rows of every table a tenancy write can touch, for 'nothing half-written' checks."""
    async with sessionmaker() as session:
        totals = []
        for model in (Organization, User):
            totals.append(await session.scalar(select(func.count()).select_from(model)) or 0)
        for model in (Membership, Invitation, ApiKey, AuditLog):
            column: Any = model.org_id  # type: ignore[attr-defined]
            query = select(func.count()).select_from(model).where(column == org_id)
            totals.append(await session.scalar(query) or 0)
    return totals


@pytest.mark.parametrize(("method", "path", "body", "field"), CASES)
async def test_bad_input_is_422_naming_the_field(
    accounts: Accounts,
    sessionmaker: async_sessionmaker[AsyncSession],
    method: str,
    path: str,
    body: Any,
    field: str,
) -> None:
    owner = await accounts.signup()
    before = await _counts(sessionmaker, owner.org_id)
    response = await owner.client.request(
        method, path.format(me=owner.user_id), json=body if body is not None else None
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert error["fields"][0]["field"] == field, error
    assert error["message"].startswith(f"{field}:")
    assert set(error["fields"][0]) == {"field", "loc", "message", "type"}
    assert await _counts(sessionmaker, owner.org_id) == before


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/api/orgs", b'{"name": "broken'),
        ("/api/invitations", b"email=a@example.com"),
        ("/api/api-keys", b'["name", "role"]'),
    ],
)
async def test_malformed_json_is_422_and_writes_nothing(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession], path: str, content: bytes
) -> None:
    owner = await accounts.signup()
    before = await _counts(sessionmaker, owner.org_id)
    response = await owner.client.post(
        path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error" and error["fields"]
    assert error["fields"][0]["type"] in {"json_invalid", "model_attributes_type", "dict_type"}
    assert await _counts(sessionmaker, owner.org_id) == before


async def test_submitted_secrets_are_not_echoed(accounts: Accounts) -> None:
    owner = await accounts.signup()
    secret = "hunter2-" + uuid.uuid4().hex
    response = await owner.client.post(
        "/api/auth/login", json={"email": owner.email, "password": secret, "extra": secret}
    )
    assert response.status_code == 422
    assert secret not in response.text
