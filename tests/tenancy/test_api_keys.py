"""API keys: created once, stored hashed, role-limited, revoked with immediate effect."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.tenancy import security
from cogumi.tenancy.models import ApiKey, Role
from tests.factories import Accounts
from tests.tenancy.conftest import audit_rows


async def test_key_is_shown_once_stored_hashed_and_works_as_bearer(
    accounts: Accounts, app, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    response = await owner.client.post("/api/api-keys", json={"name": "CI", "role": "MEMBER"})
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert key.startswith(f"cgk_{created['prefix']}_")
    assert (created["name"], created["role"], created["revoked_at"]) == ("CI", "MEMBER", None)

    async with sessionmaker() as session:
        row = await session.get(ApiKey, uuid.UUID(created["id"]))
    assert row is not None
    assert row.key_hash == security.sha256_hex(key)
    assert key not in repr(vars(row))

    listed = await owner.client.get("/api/api-keys")
    assert listed.status_code == 200
    assert key not in listed.text and "key_hash" not in listed.text
    item = next(k for k in listed.json() if k["id"] == created["id"])
    assert item["prefix"] == created["prefix"] and item["last_used_at"] is None

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"},
    ) as ci:
        me = await ci.get("/api/me")
        assert me.status_code == 200 and me.json()["api_key_prefix"] == created["prefix"]
        assert (await ci.get("/api/members")).status_code == 200
        # MEMBER role: may not manage keys.
        assert (await ci.get("/api/api-keys")).status_code == 403
    item = next(
        k for k in (await owner.client.get("/api/api-keys")).json() if k["id"] == created["id"]
    )
    assert item["last_used_at"] is not None

    rows = await audit_rows(sessionmaker, owner.org_id, "api_key.created")
    assert len(rows) == 1
    assert (rows[0].actor_user_id, rows[0].target_type, rows[0].target_id) == (
        owner.user_id,
        "api_key",
        created["id"],
    )
    assert rows[0].detail == {"name": "CI", "role": "MEMBER", "prefix": created["prefix"]}


async def test_revoked_key_gets_401_on_the_next_request(
    accounts: Accounts, app, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    created = (await owner.client.post("/api/api-keys", json={"name": "k", "role": "ADMIN"})).json()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {created['key']}"},
    ) as ci:
        assert (await ci.get("/api/api-keys")).status_code == 200
        revoked = await owner.client.delete(f"/api/api-keys/{created['id']}")
        assert revoked.status_code == 204
        after = await ci.get("/api/members")
        assert after.status_code == 401
        assert after.json()["error"] == "unauthenticated"
    again = await owner.client.delete(f"/api/api-keys/{created['id']}")
    assert again.status_code == 410
    item = next(
        k for k in (await owner.client.get("/api/api-keys")).json() if k["id"] == created["id"]
    )
    assert item["revoked_at"] is not None
    rows = await audit_rows(sessionmaker, owner.org_id, "api_key.revoked")
    assert [(r.actor_user_id, r.target_id) for r in rows] == [(owner.user_id, created["id"])]


async def test_admin_may_not_exceed_own_role(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    team = await accounts.org_with_roles()
    admin, owner = team[Role.ADMIN], team[Role.OWNER]
    refused = await admin.client.post("/api/api-keys", json={"name": "up", "role": "OWNER"})
    assert refused.status_code == 403 and refused.json()["field"] == "role"
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.org_id == owner.org_id)
        )
    assert count == 0
    assert (
        await admin.client.post("/api/api-keys", json={"name": "same", "role": "ADMIN"})
    ).status_code == 201
    owner_key = (
        await owner.client.post("/api/api-keys", json={"name": "top", "role": "OWNER"})
    ).json()
    assert (await admin.client.delete(f"/api/api-keys/{owner_key['id']}")).status_code == 403


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
async def test_members_and_viewers_cannot_manage_keys(accounts: Accounts, role: Role) -> None:
    team = await accounts.org_with_roles()
    key = (
        await team[Role.OWNER].client.post("/api/api-keys", json={"name": "k", "role": "VIEWER"})
    ).json()
    actor = team[role].client
    assert (
        await actor.post("/api/api-keys", json={"name": "x", "role": "VIEWER"})
    ).status_code == 403
    assert (await actor.get("/api/api-keys")).status_code == 403
    assert (await actor.delete(f"/api/api-keys/{key['id']}")).status_code == 403


async def test_key_made_by_a_key_is_audited_as_that_key(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    admin_key = await accounts.api_key(owner.org_id, Role.ADMIN)
    response = await admin_key.client.post(
        "/api/api-keys", json={"name": "child", "role": "VIEWER"}
    )
    assert response.status_code == 201
    assert response.json()["created_by"] is None
    rows = await audit_rows(sessionmaker, owner.org_id, "api_key.created")
    assert len(rows) == 1
    assert rows[0].actor_user_id is None and rows[0].actor_api_key_id is not None
    assert rows[0].actor_label.startswith("api-key:")


async def test_other_orgs_keys_are_404(accounts: Accounts) -> None:
    owner = await accounts.signup()
    stranger = await accounts.signup()
    theirs = (
        await stranger.client.post("/api/api-keys", json={"name": "s", "role": "VIEWER"})
    ).json()
    for key_id in (theirs["id"], str(uuid.uuid4())):
        response = await owner.client.delete(f"/api/api-keys/{key_id}")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found", "message": "API key not found"}
    assert all(k["id"] != theirs["id"] for k in (await owner.client.get("/api/api-keys")).json())
    listed = (await stranger.client.get("/api/api-keys")).json()
    assert [k["revoked_at"] for k in listed if k["id"] == theirs["id"]] == [None]
