"""Orgs of the signed-in user, switching the current org, and managing members."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.tenancy.models import LoginSession, Membership, Organization, Role
from tests.factories import Accounts
from tests.tenancy.conftest import audit_rows


async def test_list_and_create_orgs(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup(org_name="Alpha Team")
    listed = await owner.client.get("/api/orgs")
    assert listed.status_code == 200
    assert listed.json() == [{"id": str(owner.org_id), "name": "Alpha Team", "role": "OWNER"}]

    created = await owner.client.post("/api/orgs", json={"name": "  Beta Team "})
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["name"] == "Beta Team" and new["role"] == "OWNER"
    names = [o["name"] for o in (await owner.client.get("/api/orgs")).json()]
    assert names == ["Alpha Team", "Beta Team"]
    # Creating an org does not move the session.
    assert (await owner.client.get("/api/me")).json()["current_org"]["id"] == str(owner.org_id)

    rows = await audit_rows(sessionmaker, uuid.UUID(new["id"]))
    assert [(r.action, r.actor_user_id, r.target_id) for r in rows] == [
        ("org.created", owner.user_id, new["id"])
    ]


async def test_switch_org(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    other_id = (await owner.client.post("/api/orgs", json={"name": "Second"})).json()["id"]
    switched = await owner.client.post(f"/api/orgs/{other_id}/switch")
    assert switched.status_code == 200, switched.text
    assert switched.json()["current_org"] == {"id": other_id, "name": "Second", "role": "OWNER"}
    me = (await owner.client.get("/api/me")).json()
    assert me["current_org"]["id"] == other_id
    members = (await owner.client.get("/api/members")).json()
    assert [m["user_id"] for m in members] == [str(owner.user_id)]
    async with sessionmaker() as session:
        rows = (
            await session.scalars(select(LoginSession).where(LoginSession.user_id == owner.user_id))
        ).all()
    assert [str(r.current_org_id) for r in rows] == [other_id]


async def test_switch_to_foreign_or_missing_org_is_404(accounts: Accounts) -> None:
    owner = await accounts.signup()
    stranger = await accounts.signup()
    for org_id in (stranger.org_id, uuid.uuid4()):
        response = await owner.client.post(f"/api/orgs/{org_id}/switch")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found", "message": "organisation not found"}
    assert (await owner.client.get("/api/me")).json()["current_org"]["id"] == str(owner.org_id)


async def test_org_routes_are_for_people_not_api_keys(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    owner = await accounts.signup()
    key = await accounts.api_key(owner.org_id, Role.OWNER)
    calls = [
        ("GET", "/api/orgs", None),
        ("POST", "/api/orgs", {"name": "Nope"}),
        ("POST", f"/api/orgs/{owner.org_id}/switch", None),
    ]
    for method, path, body in calls:
        assert (await key.client.request(method, path, json=body)).status_code == 403
        assert (await client.request(method, path, json=body)).status_code == 401


async def test_members_listed_for_every_role(accounts: Accounts) -> None:
    team = await accounts.org_with_roles()
    for account in team.values():
        response = await account.client.get("/api/members")
        assert response.status_code == 200
        got = {m["email"]: m["role"] for m in response.json()}
        assert got == {a.email: r.value for r, a in team.items()}
    key = await accounts.api_key(team[Role.OWNER].org_id, Role.VIEWER)
    assert len((await key.client.get("/api/members")).json()) == 4


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.VIEWER])
async def test_only_owner_manages_members(accounts: Accounts, role: Role) -> None:
    team = await accounts.org_with_roles()
    target = team[Role.VIEWER].user_id
    actor = team[role].client
    patched = await actor.patch(f"/api/members/{target}", json={"role": "MEMBER"})
    assert patched.status_code == 403
    assert patched.json()["permission"] == "members.manage"
    assert (await actor.delete(f"/api/members/{target}")).status_code == 403


async def test_owner_changes_role_and_it_is_audited(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    team = await accounts.org_with_roles()
    owner, viewer = team[Role.OWNER], team[Role.VIEWER]
    response = await owner.client.patch(f"/api/members/{viewer.user_id}", json={"role": "ADMIN"})
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "ADMIN"
    # The new role applies on the viewer's very next request.
    assert (await viewer.client.get("/api/audit")).status_code == 200
    rows = await audit_rows(sessionmaker, owner.org_id, "member.role_changed")
    assert len(rows) == 1
    row = rows[0]
    assert (row.actor_user_id, row.actor_label) == (owner.user_id, owner.email)
    assert (row.target_type, row.target_id) == ("user", str(viewer.user_id))
    assert row.detail == {"old_role": "VIEWER", "new_role": "ADMIN"}
    # Same role again: nothing changes, nothing is logged.
    await owner.client.patch(f"/api/members/{viewer.user_id}", json={"role": "ADMIN"})
    assert len(await audit_rows(sessionmaker, owner.org_id, "member.role_changed")) == 1


async def test_last_owner_can_be_neither_demoted_nor_removed(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    team = await accounts.org_with_roles()
    owner = team[Role.OWNER]
    for response in (
        await owner.client.patch(f"/api/members/{owner.user_id}", json={"role": "ADMIN"}),
        await owner.client.delete(f"/api/members/{owner.user_id}"),
    ):
        assert response.status_code == 409
        assert response.json()["rule"] == "last_owner"
        assert "at least one OWNER" in response.json()["message"]
    # With a second OWNER, the first may step down.
    admin = team[Role.ADMIN]
    promoted = await owner.client.patch(f"/api/members/{admin.user_id}", json={"role": "OWNER"})
    assert promoted.status_code == 200
    demoted = await owner.client.patch(f"/api/members/{owner.user_id}", json={"role": "VIEWER"})
    assert demoted.status_code == 200
    # Now the former ADMIN is the only OWNER again.
    assert (await admin.client.delete(f"/api/members/{admin.user_id}")).status_code == 409
    async with sessionmaker() as session:
        owners = (
            await session.scalars(
                select(Membership).where(
                    Membership.org_id == owner.org_id, Membership.role == Role.OWNER
                )
            )
        ).all()
    assert [m.user_id for m in owners] == [admin.user_id]


async def test_removed_member_loses_access_at_once(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    team = await accounts.org_with_roles()
    owner, member = team[Role.OWNER], team[Role.MEMBER]
    assert (await member.client.get("/api/members")).status_code == 200
    response = await owner.client.delete(f"/api/members/{member.user_id}")
    assert response.status_code == 204
    after = await member.client.get("/api/members")
    assert after.status_code == 403
    assert (await member.client.get("/api/me")).json()["current_org"] is None
    switch = await member.client.post(f"/api/orgs/{owner.org_id}/switch")
    assert switch.status_code == 404
    emails = {m["email"] for m in (await owner.client.get("/api/members")).json()}
    assert member.email not in emails
    rows = await audit_rows(sessionmaker, owner.org_id, "member.removed")
    assert len(rows) == 1
    assert rows[0].target_id == str(member.user_id) and rows[0].detail == {"old_role": "MEMBER"}
    assert rows[0].actor_user_id == owner.user_id
    assert (await owner.client.delete(f"/api/members/{member.user_id}")).status_code == 404


async def test_other_orgs_members_are_404(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    stranger = await accounts.signup()
    for user_id in (stranger.user_id, uuid.uuid4()):
        patched = await owner.client.patch(f"/api/members/{user_id}", json={"role": "VIEWER"})
        assert patched.status_code == 404
        assert patched.json() == {"error": "not_found", "message": "member not found"}
        assert (await owner.client.delete(f"/api/members/{user_id}")).status_code == 404
    async with sessionmaker() as session:
        role = await session.scalar(
            select(Membership.role).where(Membership.user_id == stranger.user_id)
        )
        org = await session.get(Organization, stranger.org_id)
    assert role == Role.OWNER and org is not None
