"""Quotas: defaults, overrides (owner only, validated, audited), usage, and enforcement at
project creation, run creation (exact under concurrency) and ingest storage."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.config import Settings
from cogumi.projects.models import Project
from cogumi.quotas.models import OrgQuota
from cogumi.runs.models import Run
from cogumi.tenancy.models import AuditLog, Role
from tests.factories import Accounts, project_with_token
from tests.quotas.helpers import (
    assert_quota_error,
    new_project,
    quotas,
    set_quotas,
    wait_final,
)


def test_contract_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.quota_projects == 5
    assert settings.quota_runs_per_month == 100
    assert settings.quota_runs_per_day_per_project == 10
    assert settings.quota_events_per_run == 10_000
    assert settings.quota_storage_bytes == 1_000_000_000
    assert settings.run_duration_cap_sec == 900
    assert settings.ingest_rate_limit_per_min == 300


async def test_any_member_reads_usage_only_the_owner_changes_it(accounts: Accounts) -> None:
    roles = await accounts.org_with_roles()
    owner = roles[Role.OWNER]
    viewer_view = await quotas(roles[Role.VIEWER].client)
    assert set(viewer_view) == {
        "projects", "runs_per_month", "runs_per_day_per_project", "events_per_run", "storage_bytes",
    }  # fmt: skip
    assert all(not q["overridden"] and q["percent"] == 0.0 for q in viewer_view.values())
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        response = await roles[role].client.patch("/api/quotas", json={"runs_per_month": 3})
        assert response.status_code == 403, (role, response.text)
    changed = await set_quotas(owner.client, runs_per_month=3, events_per_run=500)
    assert changed["runs_per_month"]["limit"] == 3 and changed["runs_per_month"]["overridden"]
    assert changed["events_per_run"]["limit"] == 500
    assert (await quotas(roles[Role.VIEWER].client))["runs_per_month"]["limit"] == 3
    reset = await set_quotas(owner.client, runs_per_month=None)
    assert not reset["runs_per_month"]["overridden"]
    async with accounts.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.org_id == owner.org_id, AuditLog.action == "quotas.updated")
                .order_by(AuditLog.created_at)
            )
        ).all()
    assert [r.detail["changed"] for r in rows] == [
        {"runs_per_month": {"from": None, "to": 3}, "events_per_run": {"from": None, "to": 500}},
        {"runs_per_month": {"from": 3, "to": None}},
    ]


async def test_bad_overrides_are_422_naming_the_field(accounts: Accounts) -> None:
    owner = await accounts.signup()
    for body, field in (
        ({"projects": 0}, "projects"),
        ({"runs_per_month": "many"}, "runs_per_month"),
        ({"events_per_run": 5}, "events_per_run"),
        ({"unknown_quota": 1}, "unknown_quota"),
        ({}, "body"),
    ):
        response = await owner.client.patch("/api/quotas", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["fields"][0]["field"] == field
    assert not any(q["overridden"] for q in (await quotas(owner.client)).values())


async def test_project_quota_refuses_the_extra_project(accounts: Accounts) -> None:
    owner = await accounts.signup()
    await set_quotas(owner.client, projects=2)
    await new_project(owner.client)
    await new_project(owner.client)
    response = await owner.client.post("/api/projects", json={"name": "one too many"})
    assert_quota_error(response, "projects", limit=2, used=2)
    names = [p["name"] for p in (await owner.client.get("/api/projects")).json()["items"]]
    assert "one too many" not in names and len(names) == 2
    usage = await quotas(owner.client)
    assert usage["projects"]["used"] == 2 and usage["projects"]["percent"] == 100.0


async def test_parallel_projects_never_exceed_the_quota(accounts: Accounts) -> None:
    owner = await accounts.signup()
    await set_quotas(owner.client, projects=4)
    responses = await asyncio.gather(
        *(owner.client.post("/api/projects", json={"name": f"par-{i}"}) for i in range(12))
    )
    assert sorted(r.status_code for r in responses) == [201] * 4 + [429] * 8
    async with accounts.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Project).where(Project.org_id == owner.org_id)
        )
    assert count == 4


async def _count_runs(sessionmaker: async_sessionmaker[AsyncSession], org_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(select(func.count()).select_from(Run).where(Run.org_id == org_id))
            or 0
        )


async def test_twenty_parallel_runs_against_ten_remaining_make_exactly_ten(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    await set_quotas(owner.client, projects=30, runs_per_month=12)
    projects = [await new_project(owner.client) for _ in range(22)]
    for project_id in projects[:2]:  # two runs already used this month
        response = await owner.client.post(f"/api/projects/{project_id}/runs")
        assert response.status_code == 201, response.text
    assert (await quotas(owner.client))["runs_per_month"]["used"] == 2
    responses = await asyncio.gather(
        *(owner.client.post(f"/api/projects/{p}/runs") for p in projects[2:])
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 10 + [429] * 10, [r.text for r in responses if r.status_code >= 500]
    for refused in (r for r in responses if r.status_code == 429):
        assert_quota_error(refused, "runs_per_month", limit=12, used=12)
    assert await _count_runs(accounts.sessionmaker, owner.org_id) == 12
    usage = await quotas(owner.client)
    assert usage["runs_per_month"]["used"] == 12 and usage["runs_per_month"]["percent"] == 100.0
    for response in responses:
        if response.status_code == 201:
            await wait_final(owner.client, response.json()["id"])


async def test_runs_per_day_is_counted_per_project(accounts: Accounts) -> None:
    owner = await accounts.signup()
    await set_quotas(owner.client, runs_per_day_per_project=2)
    busy, other = await new_project(owner.client), await new_project(owner.client)
    for _ in range(2):
        response = await owner.client.post(f"/api/projects/{busy}/runs")
        assert response.status_code == 201, response.text
        await wait_final(owner.client, response.json()["id"])
    refused = await owner.client.post(f"/api/projects/{busy}/runs")
    assert_quota_error(refused, "runs_per_day_per_project", limit=2, used=2)
    assert 0 < refused.json()["retry_after"] <= 86_401
    elsewhere = await owner.client.post(f"/api/projects/{other}/runs")
    assert elsewhere.status_code == 201, elsewhere.text
    await wait_final(owner.client, elsewhere.json()["id"])
    assert await _count_runs(accounts.sessionmaker, owner.org_id) == 3
    assert (await quotas(owner.client))["runs_per_day_per_project"]["used"] == 2


def _event(i: int) -> dict[str, object]:
    return {
        "ts": "2030-01-01T00:00:00Z",
        "channel": "http",
        "type": "request",
        "actor": "target",
        "destination": {"host": "api.example.com", "path": "/v1", "port": 443,
                        "classification": "public_internet"},
        "payload_redacted": {"summary": f"GET /v1 #{i}", "body_redacted_preview": "x" * 200},
    }  # fmt: skip


async def test_storage_is_estimated_from_ingest_and_enforced(accounts: Accounts) -> None:
    owner = await accounts.signup()
    sidecar = await project_with_token(accounts, owner.org_id)
    before = (await quotas(owner.client))["storage_bytes"]["used"]
    batch = {"project_id": str(sidecar.project_id), "batch_id": uuid.uuid4().hex,
             "events": [_event(i) for i in range(5)]}  # fmt: skip
    response = await sidecar.client.post("/api/ingest/events", json=batch)
    assert response.status_code == 200, response.text
    grown = (await quotas(owner.client))["storage_bytes"]["used"] - before
    assert 5 * (400 + 200) < grown < 5 * (400 + 600)
    await set_quotas(owner.client, storage_bytes=1_000_000)
    async with accounts.sessionmaker() as session, session.begin():
        await session.execute(
            update(OrgQuota)
            .where(OrgQuota.org_id == owner.org_id)
            .values(stored_event_bytes=OrgQuota.stored_event_bytes + 1_000_000)
        )
    used = (await quotas(owner.client))["storage_bytes"]["used"]
    batch["batch_id"] = uuid.uuid4().hex
    refused = await sidecar.client.post("/api/ingest/events", json=batch)
    assert_quota_error(refused, "storage_bytes", limit=1_000_000, used=used)
    project = await new_project(owner.client)
    assert_quota_error(
        await owner.client.post(f"/api/projects/{project}/runs"),
        "storage_bytes", limit=1_000_000, used=used,
    )  # fmt: skip
    assert await _count_runs(accounts.sessionmaker, owner.org_id) == 0
