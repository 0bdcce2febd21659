"""Webhooks API: roles, tenancy, validation, the URL guard, secrets shown once and stored encrypted."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import FastAPI

from cogumi.app import create_app
from cogumi.tenancy.models import Role
from cogumi.webhooks import signing
from cogumi.webhooks.models import Webhook
from tests.conftest import make_settings
from tests.factories import Accounts
from tests.webhooks.conftest import hook_body

URL = "http://127.0.0.1:9/hook"


async def test_admin_and_owner_manage_members_and_viewers_cannot(accounts: Accounts) -> None:
    roles = await accounts.org_with_roles()
    for role in (Role.OWNER, Role.ADMIN):
        response = await roles[role].client.post("/api/webhooks", json=hook_body(URL))
        assert response.status_code == 201, response.text
    for role in (Role.MEMBER, Role.VIEWER):
        client = roles[role].client
        assert (await client.post("/api/webhooks", json=hook_body(URL))).status_code == 403
        assert (await client.get("/api/webhooks")).status_code == 403
    key = await accounts.api_key(roles[Role.OWNER].org_id, Role.MEMBER)
    assert (await key.client.get("/api/webhooks")).status_code == 403
    assert (await accounts.new_client().get("/api/webhooks")).status_code == 401


async def test_another_orgs_webhook_is_a_404(accounts: Accounts) -> None:
    mine, theirs = await accounts.signup(), await accounts.signup()
    hook = (await theirs.client.post("/api/webhooks", json=hook_body(URL))).json()
    for method, path, body in (
        ("GET", f"/api/webhooks/{hook['id']}", None),
        ("PATCH", f"/api/webhooks/{hook['id']}", {"enabled": False}),
        ("DELETE", f"/api/webhooks/{hook['id']}", None),
        ("GET", f"/api/webhooks/{hook['id']}/deliveries", None),
        ("GET", f"/api/webhooks/{uuid.uuid4()}", None),
    ):
        response = await mine.client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"] == "not_found"
    assert [h["id"] for h in (await mine.client.get("/api/webhooks")).json()] == []
    assert (await theirs.client.get(f"/api/webhooks/{hook['id']}")).json()["enabled"] is True


async def test_secret_is_shown_once_and_stored_encrypted(app: FastAPI, accounts: Accounts) -> None:
    owner = await accounts.signup()
    created = (await owner.client.post("/api/webhooks", json=hook_body(URL))).json()
    secret = created["secret"]
    listed = (await owner.client.get("/api/webhooks")).json()
    one = (await owner.client.get(f"/api/webhooks/{created['id']}")).json()
    assert "secret" not in listed[0] and "secret" not in one
    assert secret not in str(listed) + str(one)
    async with app.state.sessionmaker() as session:
        row = await session.get(Webhook, uuid.UUID(created["id"]))
    assert row is not None and secret not in row.secret_encrypted
    key = app.state.settings.resolved_secret_key()
    assert signing.decrypt_secret(row.secret_encrypted, secret_key=key) == secret

    rotated = await owner.client.patch(
        f"/api/webhooks/{created['id']}", json={"rotate_secret": True}
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != secret and rotated.json()["secret_prefix"] == new[:10]
    plain = await owner.client.patch(f"/api/webhooks/{created['id']}", json={"name": "renamed"})
    assert "secret" not in plain.json() and plain.json()["name"] == "renamed"
    audit = (await owner.client.get("/api/audit")).json()
    actions = [e["action"] for e in (audit["items"] if isinstance(audit, dict) else audit)]
    assert {"webhook.created", "webhook.updated"} <= set(actions)
    assert secret not in str(audit) and new not in str(audit)


async def test_guard_refuses_metadata_and_bad_urls_on_create_and_update(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "ftp://127.0.0.1/hook",
        "http://user:pw@127.0.0.1/hook",
    ):
        response = await owner.client.post("/api/webhooks", json=hook_body(url))
        assert response.status_code == 422, (url, response.text)
        assert response.json()["fields"][0]["field"] == "url"
    hook = (await owner.client.post("/api/webhooks", json=hook_body(URL))).json()
    response = await owner.client.patch(
        f"/api/webhooks/{hook['id']}", json={"url": "http://169.254.169.254/"}
    )
    assert response.status_code == 422
    assert (await owner.client.get(f"/api/webhooks/{hook['id']}")).json()["url"] == URL
    assert len((await owner.client.get("/api/webhooks")).json()) == 1


async def test_hosted_mode_refuses_private_receivers(database_url: str, tmp_path: Path) -> None:
    hosted = create_app(make_settings(database_url, tmp_path, mode="hosted"))
    async with hosted.router.lifespan_context(hosted):
        hosted_accounts = Accounts(app=hosted, sessionmaker=hosted.state.sessionmaker)
        try:
            owner = await hosted_accounts.signup()
            response = await owner.client.post("/api/webhooks", json=hook_body(URL))
            assert response.status_code == 422
            assert "private" in response.json()["message"]
        finally:
            await hosted_accounts.close()


async def test_validation_names_the_field(accounts: Accounts) -> None:
    owner = await accounts.signup()
    cases = [
        ({**hook_body(URL), "events": []}, "events"),
        ({**hook_body(URL), "events": ["run.started"]}, "events"),
        ({**hook_body(URL), "min_severity": "severe"}, "min_severity"),
        ({**hook_body(URL), "format": "teams"}, "format"),
        ({**hook_body(URL), "secret": "mine"}, "secret"),
        # A flag is true or false, not "false" (which lax parsing read as False) or 0.
        ({**hook_body(URL), "enabled": "false"}, "enabled"),
        ({**hook_body(URL), "enabled": 0}, "enabled"),
    ]
    for body, name in cases:
        response = await owner.client.post("/api/webhooks", json=body)
        assert response.status_code == 422, body
        assert any(f["field"].split(".")[0] == name for f in response.json()["fields"]), (
            response.text
        )
    hook = (await owner.client.post("/api/webhooks", json=hook_body(URL))).json()
    response = await owner.client.patch(f"/api/webhooks/{hook['id']}", json={"name": None})
    assert response.status_code == 422 and response.json()["fields"][0]["field"] == "name"
    rotate = await owner.client.patch(f"/api/webhooks/{hook['id']}", json={"rotate_secret": 1})
    assert rotate.status_code == 422 and rotate.json()["fields"][0]["field"] == "rotate_secret"
    events = {**hook_body(URL), "events": ["finding.created", "finding.created"]}
    assert (await owner.client.post("/api/webhooks", json=events)).json()["events"] == [
        "finding.created"
    ]


async def test_delete_removes_it(accounts: Accounts) -> None:
    owner = await accounts.signup()
    hook = (await owner.client.post("/api/webhooks", json=hook_body(URL))).json()
    assert (await owner.client.delete(f"/api/webhooks/{hook['id']}")).status_code == 204
    assert (await owner.client.get(f"/api/webhooks/{hook['id']}")).status_code == 404
    assert (await owner.client.delete(f"/api/webhooks/{hook['id']}")).status_code == 404
