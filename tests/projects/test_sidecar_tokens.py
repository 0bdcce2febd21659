"""Sidecar tokens: shown once, stored hashed, listed safely, revoked, authenticated."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from cogumi.errors import Forbidden, Unauthenticated
from cogumi.projects.models import SidecarToken
from cogumi.projects.service import authenticate_sidecar_token
from cogumi.tenancy.models import Role
from tests.factories import Accounts
from tests.projects.helpers import audit_rows, create_project


async def test_create_shows_token_once_and_stores_only_hash(
    accounts: Accounts, sessionmaker
) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client)
    url = f"/api/projects/{project['id']}/sidecar-tokens"
    response = await owner.client.post(url, json={"name": "edge-1"})
    assert response.status_code == 201, response.text
    issued = response.json()
    token = issued["token"]
    assert token.startswith(f"cgs_{issued['prefix']}_")
    assert issued["status"] == "active" and issued["name"] == "edge-1"
    assert issued["events_accepted"] == 0 and issued["last_seen_at"] is None

    listed = (await owner.client.get(url)).json()["items"]
    assert len(listed) == 1
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    assert token not in (await owner.client.get(url)).text
    assert set(listed[0]) >= {"id", "name", "prefix", "status", "created_at", "last_seen_at"}

    async with sessionmaker() as session:
        row = await session.get(SidecarToken, uuid.UUID(issued["id"]))
        assert row is not None and row.token_hash != token and token not in row.token_hash
    created = await audit_rows(sessionmaker, owner.org_id, "sidecar_token.created")
    assert [r.target_id for r in created] == [issued["id"]]
    assert token not in str(created[0].detail)


async def test_revoke_and_authenticate(accounts: Accounts, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client)
    other_project = await create_project(owner.client)
    url = f"/api/projects/{project['id']}/sidecar-tokens"
    issued = (await owner.client.post(url, json={"name": "edge"})).json()
    token = issued["token"]
    project_id = uuid.UUID(project["id"])

    async with sessionmaker() as session:
        row = await authenticate_sidecar_token(session, token, project_id=project_id)
        assert row.id == uuid.UUID(issued["id"]) and row.org_id == owner.org_id
        with pytest.raises(Forbidden):
            await authenticate_sidecar_token(
                session, token, project_id=uuid.UUID(other_project["id"])
            )
        for bad in ("", "cgs_short_x", "cgk_" + token[4:], token[:-2] + "xx", "garbage"):
            with pytest.raises(Unauthenticated):
                await authenticate_sidecar_token(session, bad)

    revoked = await owner.client.delete(f"{url}/{issued['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"] is not None
    again = await owner.client.delete(f"{url}/{issued['id']}")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert len(await audit_rows(sessionmaker, owner.org_id, "sidecar_token.revoked")) == 1

    async with sessionmaker() as session:
        with pytest.raises(Forbidden) as refused:
            await authenticate_sidecar_token(session, token)
        assert refused.value.status_code == 403


async def test_token_of_another_project_or_org_is_404(accounts: Accounts) -> None:
    owner, stranger = await accounts.signup(), await accounts.signup()
    mine = await create_project(owner.client)
    sibling = await create_project(owner.client)
    theirs = await create_project(stranger.client)
    issued = (
        await owner.client.post(f"/api/projects/{mine['id']}/sidecar-tokens", json={"name": "a"})
    ).json()
    wrong_project = await owner.client.delete(
        f"/api/projects/{sibling['id']}/sidecar-tokens/{issued['id']}"
    )
    assert wrong_project.status_code == 404
    foreign = await stranger.client.delete(
        f"/api/projects/{theirs['id']}/sidecar-tokens/{issued['id']}"
    )
    assert foreign.status_code == 404
    listed = await stranger.client.get(f"/api/projects/{mine['id']}/sidecar-tokens")
    assert listed.status_code == 404
    still = (await owner.client.get(f"/api/projects/{mine['id']}/sidecar-tokens")).json()
    assert still["items"][0]["status"] == "active"


async def test_roles_and_validation(accounts: Accounts) -> None:
    team = await accounts.org_with_roles()
    project = await create_project(team[Role.OWNER].client)
    url = f"/api/projects/{project['id']}/sidecar-tokens"
    assert (await team[Role.ADMIN].client.post(url, json={"name": "x"})).status_code == 201
    for role in (Role.MEMBER, Role.VIEWER):
        assert (await team[role].client.post(url, json={"name": "x"})).status_code == 403
        assert (await team[role].client.get(url)).status_code == 200
    for body in ({}, {"name": ""}, {"name": "x" * 121}, {"name": "ok", "token": "mine"}):
        assert (await team[Role.OWNER].client.post(url, json=body)).status_code == 422
    bad_id = await team[Role.OWNER].client.delete(f"{url}/nope")
    assert bad_id.status_code == 422 and bad_id.json()["fields"][0]["field"] == "token_id"


async def test_active_tokens_are_bounded(accounts: Accounts, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client)
    url = f"/api/projects/{project['id']}/sidecar-tokens"
    ids = []
    for i in range(20):
        response = await owner.client.post(url, json={"name": f"t{i}"})
        assert response.status_code == 201
        ids.append(response.json()["id"])
    assert (await owner.client.post(url, json={"name": "one too many"})).status_code == 409
    await owner.client.delete(f"{url}/{ids[0]}")
    assert (await owner.client.post(url, json={"name": "fits again"})).status_code == 201
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(SidecarToken).where(SidecarToken.project_id == uuid.UUID(project["id"]))
            )
        ).all()
    assert len(rows) == 21
