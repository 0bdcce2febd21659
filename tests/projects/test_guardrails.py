"""Production guardrail: the override's three confirmations, audit, and check_run_allowed."""

from __future__ import annotations

import pytest

from cogumi.errors import Forbidden
from cogumi.projects.models import Environment, Project
from cogumi.projects.service import check_run_allowed
from cogumi.tenancy.models import Role
from tests.factories import Accounts
from tests.projects.helpers import audit_rows, create_project

ALL_CONFIRMED = {
    "not_customer_facing": True,
    "no_real_customer_secrets": True,
    "accepts_unsafe_behaviour": True,
}


def test_check_run_allowed_by_environment() -> None:
    assert check_run_allowed(Project(environment=Environment.sandbox)) == "ok"
    assert check_run_allowed(Project(environment=Environment.staging)) == "warning"
    with pytest.raises(Forbidden) as refused:
        check_run_allowed(Project(environment=Environment.prod, prod_override_enabled=False))
    assert refused.value.status_code == 403
    overridden = Project(environment=Environment.prod, prod_override_enabled=True)
    assert check_run_allowed(overridden) == "warning"


async def test_enable_requires_all_three_confirmations(accounts: Accounts, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client, environment="prod")
    url = f"/api/projects/{project['id']}/prod-override"
    partial = {**ALL_CONFIRMED, "no_real_customer_secrets": False}
    response = await owner.client.post(url, json={"enabled": True, "confirmations": partial})
    assert response.status_code == 400
    assert response.json()["missing"] == ["no_real_customer_secrets"]
    assert "no_real_customer_secrets" in response.json()["message"]
    bare = await owner.client.post(url, json={"enabled": True})
    assert bare.status_code == 400
    assert bare.json()["missing"] == [
        "not_customer_facing",
        "no_real_customer_secrets",
        "accepts_unsafe_behaviour",
    ]
    unchanged = (await owner.client.get(f"/api/projects/{project['id']}")).json()
    assert unchanged["prod_override_enabled"] is False
    assert await audit_rows(sessionmaker, owner.org_id, "project.prod_override_enabled") == []


@pytest.mark.parametrize("loose", [1, "yes", "true", "on"])
async def test_a_confirmation_is_true_itself(accounts: Accounts, loose: object) -> None:
    """``1`` or ``"yes"`` is not an explicit confirmation (they were coerced to true)."""
    owner = await accounts.signup()
    project = await create_project(owner.client, environment="prod")
    url = f"/api/projects/{project['id']}/prod-override"
    sloppy = {**ALL_CONFIRMED, "accepts_unsafe_behaviour": loose}
    response = await owner.client.post(url, json={"enabled": True, "confirmations": sloppy})
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["fields"]] == [
        "confirmations.accepts_unsafe_behaviour"
    ]
    flag = await owner.client.post(url, json={"enabled": 1, "confirmations": ALL_CONFIRMED})
    assert flag.status_code == 422
    unchanged = (await owner.client.get(f"/api/projects/{project['id']}")).json()
    assert unchanged["prod_override_enabled"] is False


async def test_enable_records_who_and_when_then_disable_clears(
    accounts: Accounts, sessionmaker
) -> None:  # type: ignore[no-untyped-def]
    team = await accounts.org_with_roles()
    admin = team[Role.ADMIN]
    project = await create_project(admin.client, environment="prod")
    url = f"/api/projects/{project['id']}/prod-override"
    on = await admin.client.post(url, json={"enabled": True, "confirmations": ALL_CONFIRMED})
    assert on.status_code == 200, on.text
    body = on.json()
    assert body["prod_override_enabled"] is True
    assert body["prod_override_by"] == str(admin.user_id)
    assert body["prod_override_at"] is not None
    enabled = await audit_rows(sessionmaker, admin.org_id, "project.prod_override_enabled")
    assert [(r.target_id, r.actor_user_id) for r in enabled] == [(project["id"], admin.user_id)]

    off = await admin.client.post(url, json={"enabled": False})
    assert off.status_code == 200
    assert off.json()["prod_override_enabled"] is False
    assert off.json()["prod_override_by"] is None and off.json()["prod_override_at"] is None
    disabled = await audit_rows(sessionmaker, admin.org_id, "project.prod_override_disabled")
    assert len(disabled) == 1


async def test_member_and_viewer_cannot_toggle(accounts: Accounts) -> None:
    team = await accounts.org_with_roles()
    project = await create_project(team[Role.OWNER].client, environment="prod")
    url = f"/api/projects/{project['id']}/prod-override"
    for role in (Role.MEMBER, Role.VIEWER):
        response = await team[role].client.post(
            url, json={"enabled": True, "confirmations": ALL_CONFIRMED}
        )
        assert response.status_code == 403


async def test_override_only_for_prod_and_cleared_by_environment_change(
    accounts: Accounts, sessionmaker
) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    sandbox = await create_project(owner.client)
    refused = await owner.client.post(
        f"/api/projects/{sandbox['id']}/prod-override",
        json={"enabled": True, "confirmations": ALL_CONFIRMED},
    )
    assert refused.status_code == 409

    prod = await create_project(owner.client, environment="prod")
    await owner.client.post(
        f"/api/projects/{prod['id']}/prod-override",
        json={"enabled": True, "confirmations": ALL_CONFIRMED},
    )
    moved = await owner.client.patch(f"/api/projects/{prod['id']}", json={"environment": "staging"})
    assert moved.json()["prod_override_enabled"] is False
    back = await owner.client.patch(f"/api/projects/{prod['id']}", json={"environment": "prod"})
    assert back.json()["prod_override_enabled"] is False
    updates = await audit_rows(sessionmaker, owner.org_id, "project.updated")
    assert updates[0].detail == {"fields": ["environment"], "prod_override_cleared": True}


async def test_override_body_is_validated(accounts: Accounts) -> None:
    owner = await accounts.signup()
    project = await create_project(owner.client, environment="prod")
    url = f"/api/projects/{project['id']}/prod-override"
    response = await owner.client.post(
        url, json={"enabled": True, "confirmations": {**ALL_CONFIRMED, "extra": True}}
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "confirmations.extra"
    missing = await owner.client.post(url, json={})
    assert missing.status_code == 422
    assert missing.json()["fields"][0]["field"] == "enabled"
