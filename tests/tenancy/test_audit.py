"""The audit log: one row per action with actor, time and target; keyset pages; access."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest

from cogumi.tenancy.models import Role
from tests.factories import PASSWORD, Account, Accounts, unique_email


async def _every_action(owner: Account, client: httpx.AsyncClient) -> dict[str, str]:
    """Do each tenancy action once in the owner's org; returns the target of each."""
    targets: dict[str, str] = {"org.created": str(owner.org_id)}
    invited = await owner.client.post(
        "/api/invitations", json={"email": unique_email("joiner"), "role": "VIEWER"}
    )
    targets["member.invited"] = invited.json()["id"]
    token = invited.json()["invite_url"].rsplit("/", 1)[1]
    joined = await client.post(f"/api/invitations/{token}/accept", json={"password": PASSWORD})
    joiner = joined.json()["user"]["id"]
    targets["member.joined"] = joiner
    await owner.client.patch(f"/api/members/{joiner}", json={"role": "MEMBER"})
    targets["member.role_changed"] = joiner
    other = await owner.client.post(
        "/api/invitations", json={"email": unique_email("never"), "role": "VIEWER"}
    )
    await owner.client.delete(f"/api/invitations/{other.json()['id']}")
    targets["invitation.revoked"] = other.json()["id"]
    await owner.client.delete(f"/api/members/{joiner}")
    targets["member.removed"] = joiner
    key = await owner.client.post("/api/api-keys", json={"name": "ci", "role": "VIEWER"})
    targets["api_key.created"] = key.json()["id"]
    await owner.client.delete(f"/api/api-keys/{key.json()['id']}")
    targets["api_key.revoked"] = key.json()["id"]
    return targets


async def test_every_action_writes_exactly_one_row(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    owner = await accounts.signup()
    targets = await _every_action(owner, client)
    response = await owner.client.get("/api/audit", params={"limit": 100})
    assert response.status_code == 200
    page = response.json()
    items: list[dict[str, Any]] = page["items"]
    assert page["next_cursor"] is None
    counts = Counter(item["action"] for item in items)
    assert counts == Counter({action: 1 for action in targets} | {"member.invited": 2})
    for item in items:
        if item["action"] == "member.invited" and item["target_id"] != targets["member.invited"]:
            continue
        assert item["target_id"] == targets[item["action"]], item
        assert item["target_type"] in {"org", "invitation", "user", "api_key"}
        assert item["actor_label"]
        assert item["actor_user_id"] or item["actor_api_key_id"]
        assert datetime.fromisoformat(item["created_at"]).tzinfo is not None
    joined = next(i for i in items if i["action"] == "member.joined")
    assert joined["actor_user_id"] == targets["member.joined"]
    others = [i for i in items if i["action"] != "member.joined"]
    assert all(i["actor_user_id"] == str(owner.user_id) for i in others)
    stamps = [(i["created_at"], i["id"]) for i in items]
    assert items[0]["action"] == "api_key.revoked" and items[-1]["action"] == "org.created"
    assert [s[0] for s in stamps] == sorted((s[0] for s in stamps), reverse=True)


async def test_pages_follow_each_other_without_gaps(
    accounts: Accounts, client: httpx.AsyncClient
) -> None:
    owner = await accounts.signup()
    await _every_action(owner, client)
    everything = (await owner.client.get("/api/audit", params={"limit": 200})).json()["items"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await owner.client.get("/api/audit", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in everything]
    assert len(seen) == 9  # org.created + 8 actions (two invitations)


@pytest.mark.parametrize("cursor", ["garbage", "Zm9vfGJhcg", "", "x" * 201])
async def test_bad_cursor_is_422_naming_it(accounts: Accounts, cursor: str) -> None:
    owner = await accounts.signup()
    response = await owner.client.get("/api/audit", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["fields"][0]["field"] == "cursor"
    assert body["fields"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("limit", ["0", "201", "ten"])
async def test_bad_limit_is_422(accounts: Accounts, limit: str) -> None:
    owner = await accounts.signup()
    response = await owner.client.get("/api/audit", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "limit"


async def test_only_owner_and_admin_read_it_and_only_their_org(accounts: Accounts) -> None:
    team = await accounts.org_with_roles()
    stranger = await accounts.signup()
    for role, account in team.items():
        response = await account.client.get("/api/audit")
        expected = 200 if role in (Role.OWNER, Role.ADMIN) else 403
        assert response.status_code == expected
    for role in (Role.OWNER, Role.ADMIN, Role.MEMBER):
        key = await accounts.api_key(team[Role.OWNER].org_id, role)
        expected = 403 if role == Role.MEMBER else 200
        assert (await key.client.get("/api/audit")).status_code == expected
    items = (await team[Role.OWNER].client.get("/api/audit")).json()["items"]
    assert [i["target_id"] for i in items] == [str(team[Role.OWNER].org_id)]
    theirs = (await stranger.client.get("/api/audit")).json()["items"]
    assert [i["target_id"] for i in theirs] == [str(stranger.org_id)]
    assert uuid.UUID(theirs[0]["id"]) not in {uuid.UUID(i["id"]) for i in items}
