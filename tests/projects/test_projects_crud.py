"""Project CRUD: defaults, validation of every field, roles, tenancy, audit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from cogumi.projects.models import Project
from cogumi.tenancy.models import Role
from tests.factories import Accounts
from tests.projects.helpers import audit_rows, create_project, error_fields, unique_name


async def test_create_with_defaults(accounts: Accounts, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client)
    assert project["environment"] == "sandbox"
    assert project["sink_domains"] == ["attacker-sink.local"]
    assert project["retention_days"] == 7
    assert project["adapter"] == {"kind": "native"}
    assert project["redteam"]["intensity"] == "med"
    assert project["redteam"]["scripts"] == ["S1", "S2", "S3", "S4", "S5"]
    assert len(project["redteam"]["styles"]) == 6
    assert project["prod_override_enabled"] is False
    assert project["created_by"] == str(owner.user_id)
    assert project["org_id"] == str(owner.org_id)
    rows = await audit_rows(sessionmaker, owner.org_id, "project.created")
    assert [r.target_id for r in rows] == [project["id"]]


async def test_full_body_is_normalised(accounts: Accounts) -> None:
    owner = await accounts.signup()
    project = await create_project(
        owner.client,
        environment="staging",
        agent_test_url="https://agent.example.com/api",
        adapter={"kind": "openai", "model": "gpt-4o-mini", "api_key_env": "AGENT_OPENAI_KEY"},
        tool_domains=["API.Tools.example.com.", "api.tools.example.com", "*.github.com"],
        internal_suffixes=[".Corp.Internal", "svc.cluster.local"],
        sink_domains=["attacker-sink.local", "Evil.example"],
        sensitive_paths=["/admin", "/internal/*", "/admin"],
        retention_days=30,
        redteam={
            "styles": ["incident_urgent", "roleplay_fiction"],
            "intensity": "high",
            "scripts": ["S1", "S5", "custom-leak_1"],
        },
    )
    assert project["tool_domains"] == ["api.tools.example.com", "github.com"]
    assert project["internal_suffixes"] == ["corp.internal", "svc.cluster.local"]
    assert project["sink_domains"] == ["attacker-sink.local", "evil.example"]
    assert project["sensitive_paths"] == ["/admin", "/internal/*"]
    assert project["adapter"]["api_key_env"] == "AGENT_OPENAI_KEY"
    assert project["redteam"]["scripts"] == ["S1", "S5", "custom-leak_1"]


async def test_template_adapter(accounts: Accounts) -> None:
    owner = await accounts.signup()
    adapter = {
        "kind": "template",
        "request_template": {"input": {"text": "{{message}}"}, "stream": False},
        "response_path": "output.choices.0.text",
    }
    project = await create_project(owner.client, adapter=adapter)
    assert project["adapter"] == adapter


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "x" * 121}, "name"),
    ({"name": "two\nlines"}, "name"),
    ({"environment": "production"}, "environment"),
    ({"agent_test_url": "ftp://agent.example.com"}, "agent_test_url"),
    ({"agent_test_url": "https://" + "a" * 2050 + ".com"}, "agent_test_url"),
    ({"agent_test_url": "http://user:pw@agent.example.com"}, "agent_test_url"),
    ({"agent_test_url": "http://169.254.169.254/latest"}, "agent_test_url"),
    ({"agent_test_url": "http://metadata.google.internal/"}, "agent_test_url"),
    ({"agent_test_url": "not a url"}, "agent_test_url"),
    ({"adapter": {"kind": "grpc"}}, "adapter"),
    ({"adapter": {"kind": "openai"}}, "adapter.openai.model"),
    ({"adapter": {"kind": "openai", "model": "m", "api_key": "sk-live"}}, "adapter.openai.api_key"),
    (
        {"adapter": {"kind": "openai", "model": "m", "api_key_env": "sk-proj-abc123"}},
        "adapter.openai.api_key_env",
    ),
    (
        {"adapter": {"kind": "template", "request_template": {"q": "hi"}, "response_path": "a"}},
        "adapter.template.request_template",
    ),
    (
        {
            "adapter": {
                "kind": "template",
                "request_template": {"q": "{{message}}"},
                "response_path": "a..b",
            }
        },
        "adapter.template.response_path",
    ),
    ({"adapter": {"kind": "native", "model": "x"}}, "adapter.native.model"),
    ({"tool_domains": ["not a host"]}, "tool_domains"),
    ({"tool_domains": ["-bad.example"]}, "tool_domains"),
    ({"tool_domains": [f"h{i}.example" for i in range(101)]}, "tool_domains"),
    ({"internal_suffixes": ["a_b.internal"]}, "internal_suffixes"),
    ({"sink_domains": []}, "sink_domains"),
    ({"sink_domains": ["http://sink.example"]}, "sink_domains"),
    ({"sensitive_paths": ["admin"]}, "sensitive_paths"),
    ({"sensitive_paths": ["/a b"]}, "sensitive_paths"),
    ({"retention_days": 0}, "retention_days"),
    ({"retention_days": 366}, "retention_days"),
    ({"redteam": {"styles": ["shouting"]}}, "redteam.styles.0"),
    ({"redteam": {"styles": []}}, "redteam.styles"),
    ({"redteam": {"intensity": "max"}}, "redteam.intensity"),
    ({"redteam": {"scripts": ["S1", "9lives"]}}, "redteam.scripts"),
    ({"redteam": {"scripts": []}}, "redteam.scripts"),
    ({"redteam": {"extra": True}}, "redteam.extra"),
    ({"colour": "blue"}, "colour"),
]


async def test_every_invalid_field_is_422_naming_it(accounts: Accounts, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    wrong: list[str] = []
    for fields, field in BAD_FIELDS:
        body = {"name": unique_name(), **fields}
        response = await owner.client.post("/api/projects", json=body)
        if field not in error_fields(response):
            wrong.append(f"{fields!r}: {response.json()['fields']}")
    assert wrong == []
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Project).where(Project.org_id == owner.org_id)
        )
    assert count == 0


async def test_names_are_unique_per_org_ignoring_case(accounts: Accounts) -> None:
    owner, other = await accounts.signup(), await accounts.signup()
    name = unique_name()
    await create_project(owner.client, name=name)
    again = await owner.client.post("/api/projects", json={"name": name.upper()})
    assert again.status_code == 409
    assert again.json()["field"] == "name"
    # Another org may use the same name.
    await create_project(other.client, name=name)


async def test_list_and_get_are_scoped_to_the_org(accounts: Accounts) -> None:
    owner, stranger = await accounts.signup(), await accounts.signup()
    first = await create_project(owner.client)
    second = await create_project(owner.client)
    theirs = await create_project(stranger.client)
    listed = (await owner.client.get("/api/projects")).json()["items"]
    assert [p["id"] for p in listed] == [first["id"], second["id"]]
    got = await owner.client.get(f"/api/projects/{first['id']}")
    assert got.status_code == 200 and got.json() == first
    foreign = await owner.client.get(f"/api/projects/{theirs['id']}")
    missing = await owner.client.get(f"/api/projects/{uuid.uuid4()}")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_foreign_project_is_404_for_every_verb(accounts: Accounts, method: str) -> None:
    owner, stranger = await accounts.signup(), await accounts.signup()
    theirs = await create_project(stranger.client)
    body = {"name": unique_name()} if method == "PATCH" else None
    response = await owner.client.request(method, f"/api/projects/{theirs['id']}", json=body)
    assert response.status_code == 404
    still = await stranger.client.get(f"/api/projects/{theirs['id']}")
    assert still.json()["name"] == theirs["name"]


async def test_bad_uuid_is_422(accounts: Accounts) -> None:
    owner = await accounts.signup()
    response = await owner.client.get("/api/projects/not-a-uuid")
    assert error_fields(response) == ["project_id"]


async def test_patch_changes_only_sent_fields_and_audits_names(
    accounts: Accounts, sessionmaker
) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client, agent_test_url="https://agent.example.com")
    response = await owner.client.patch(
        f"/api/projects/{project['id']}",
        json={
            "retention_days": 14,
            "agent_test_url": None,
            "adapter": {"kind": "openai", "model": "m1", "api_key_env": "KEY_ENV"},
            "name": project["name"],  # unchanged: not reported
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["retention_days"] == 14 and updated["agent_test_url"] is None
    assert updated["sink_domains"] == project["sink_domains"]
    assert updated["updated_at"] >= project["updated_at"]
    rows = await audit_rows(sessionmaker, owner.org_id, "project.updated")
    assert rows[-1].detail == {"fields": ["adapter", "agent_test_url", "retention_days"]}
    assert "KEY_ENV" not in str(rows[-1].detail)


async def test_patch_null_on_required_field_is_422_and_writes_nothing(accounts: Accounts) -> None:
    owner = await accounts.signup()
    project = await create_project(owner.client)
    response = await owner.client.patch(
        f"/api/projects/{project['id']}", json={"retention_days": 9, "name": None}
    )
    assert error_fields(response) == ["name"]
    bad = await owner.client.patch(
        f"/api/projects/{project['id']}", json={"retention_days": 9, "tool_domains": ["a b"]}
    )
    assert "tool_domains" in error_fields(bad)
    after = (await owner.client.get(f"/api/projects/{project['id']}")).json()
    assert after["retention_days"] == 7


async def test_patch_rename_to_taken_name_is_409(accounts: Accounts) -> None:
    owner = await accounts.signup()
    first = await create_project(owner.client)
    second = await create_project(owner.client)
    response = await owner.client.patch(
        f"/api/projects/{second['id']}", json={"name": first["name"]}
    )
    assert response.status_code == 409


async def test_delete_removes_project_and_tokens(accounts: Accounts, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    owner = await accounts.signup()
    project = await create_project(owner.client)
    token = await owner.client.post(
        f"/api/projects/{project['id']}/sidecar-tokens", json={"name": "edge"}
    )
    assert token.status_code == 201
    response = await owner.client.delete(f"/api/projects/{project['id']}")
    assert response.status_code == 204
    assert (await owner.client.get(f"/api/projects/{project['id']}")).status_code == 404
    rows = await audit_rows(sessionmaker, owner.org_id, "project.deleted")
    assert [r.target_id for r in rows] == [project["id"]]
    again = await owner.client.delete(f"/api/projects/{project['id']}")
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("role", "write_status"),
    [(Role.OWNER, 201), (Role.ADMIN, 201), (Role.MEMBER, 403), (Role.VIEWER, 403)],
)
async def test_roles(accounts: Accounts, role: Role, write_status: int) -> None:
    team = await accounts.org_with_roles()
    existing = await create_project(team[Role.OWNER].client)
    client = team[role].client
    created = await client.post("/api/projects", json={"name": unique_name()})
    assert created.status_code == write_status
    assert (await client.get("/api/projects")).status_code == 200
    assert (await client.get(f"/api/projects/{existing['id']}")).status_code == 200
    patched = await client.patch(f"/api/projects/{existing['id']}", json={"retention_days": 3})
    assert patched.status_code == (200 if write_status == 201 else 403)


async def test_api_key_roles_apply_too(accounts: Accounts) -> None:
    owner = await accounts.signup()
    viewer_key = await accounts.api_key(owner.org_id, Role.VIEWER)
    admin_key = await accounts.api_key(owner.org_id, Role.ADMIN)
    denied = await viewer_key.client.post("/api/projects", json={"name": unique_name()})
    assert denied.status_code == 403
    await create_project(admin_key.client)


async def test_anonymous_is_401(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/api/projects")).status_code == 401


async def test_routes_are_in_openapi(client) -> None:  # type: ignore[no-untyped-def]
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    for path in (
        "/api/projects",
        "/api/projects/{project_id}",
        "/api/projects/{project_id}/prod-override",
        "/api/projects/{project_id}/sidecar-tokens",
        "/api/projects/{project_id}/sidecar-tokens/{token_id}",
        "/api/projects/{project_id}/connect-snippets",
        "/api/projects/{project_id}/validate-agent-endpoint",
    ):
        assert path in paths
