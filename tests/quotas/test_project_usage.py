"""A project's usage and limits (settings page): its own day, runs and tokens; the org's
month, projects and storage; never another org's or another project's figures."""

from __future__ import annotations

import uuid
from datetime import timedelta

from cogumi.config import Settings
from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.events.models import Event
from cogumi.projects.models import Project
from cogumi.quotas.project_usage import UsageLine, project_usage
from cogumi.runs.models import Run, RunStatus
from tests.factories import Accounts, project_with_token
from tests.quotas.helpers import set_quotas, wait_final
from tests.web.test_pages import page


def event(project_id: uuid.UUID, org_id: uuid.UUID, token_id: uuid.UUID | None) -> Event:
    return Event(
        id=uuid.uuid4(), org_id=org_id, project_id=project_id, ts=utcnow(), channel="http",
        type="http.request", actor="target", integrity_hash="0" * 64, sidecar_token_id=token_id,
    )  # fmt: skip


async def usage_of(accounts: Accounts, project_id: uuid.UUID) -> dict[str, UsageLine]:
    settings: Settings = accounts.app.state.settings
    async with accounts.sessionmaker() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        lines = await project_usage(session, project=project, settings=settings)
    return {line.quota: line for line in lines}


async def test_project_usage_counts_this_project_and_this_org(accounts: Accounts) -> None:
    owner = await accounts.signup()
    mine = await project_with_token(accounts, owner.org_id)
    busy = await project_with_token(accounts, owner.org_id)
    stranger = await accounts.signup()
    elsewhere = await project_with_token(accounts, stranger.org_id)
    await set_quotas(owner.client, runs_per_day_per_project=5, runs_per_month=50)
    for project_id, runs in ((mine.project_id, 1), (busy.project_id, 4)):
        for _ in range(runs):
            created = await owner.client.post(f"/api/projects/{project_id}/runs", json={})
            assert created.status_code == 201, created.text
            await wait_final(owner.client, created.json()["id"])  # no agent URL: fails at once
    created = await stranger.client.post(f"/api/projects/{elsewhere.project_id}/runs", json={})
    assert created.status_code == 201, created.text
    async with transaction(accounts.sessionmaker) as session:
        session.add(Run(id=uuid.uuid4(), org_id=owner.org_id, project_id=mine.project_id,
                        status=RunStatus.running, started_at=utcnow() - timedelta(minutes=5),
                        last_seq=42))  # fmt: skip
        session.add(Run(id=uuid.uuid4(), org_id=owner.org_id, project_id=busy.project_id,
                        status=RunStatus.running, started_at=utcnow() - timedelta(minutes=9),
                        last_seq=900))  # fmt: skip
        for _ in range(3):
            session.add(event(mine.project_id, owner.org_id, mine.token_id))
        session.add(event(mine.project_id, owner.org_id, None))  # engine events: no token
        for _ in range(7):
            session.add(event(busy.project_id, owner.org_id, busy.token_id))
            session.add(event(elsewhere.project_id, stranger.org_id, elsewhere.token_id))

    settings: Settings = accounts.app.state.settings
    lines = await usage_of(accounts, mine.project_id)
    assert list(lines) == [
        "runs_per_month", "runs_per_day_per_project", "events_per_run", "projects",
        "storage_bytes", "ingest_per_min", "run_duration_sec",
    ]  # fmt: skip
    assert (lines["runs_per_month"].used, lines["runs_per_month"].limit) == (5, 50)
    today = lines["runs_per_day_per_project"]
    assert (today.used, today.limit, today.overridden, today.percent) == (1, 5, True, 20.0)
    assert (lines["events_per_run"].used, lines["events_per_run"].limit) == (
        42,
        settings.quota_events_per_run,
    )
    assert (lines["projects"].used, lines["projects"].limit) == (2, settings.quota_projects)
    assert lines["storage_bytes"].limit == settings.quota_storage_bytes
    assert (lines["ingest_per_min"].used, lines["ingest_per_min"].limit) == (
        3,
        settings.ingest_rate_limit_per_min,
    )
    duration = lines["run_duration_sec"]
    assert 300 <= duration.used < 600 and duration.limit == settings.run_duration_cap_sec
    assert {line.changed_by for line in lines.values()} == {"owner", "operator"}
    assert lines["runs_per_day_per_project"].state == "within the limit"
    assert (await usage_of(accounts, busy.project_id))["runs_per_day_per_project"].state == (
        "near the limit"
    )

    dom = await page(owner.client, f"/projects/{mine.project_id}/settings")
    text = " ".join(" ".join(dom.text).split())
    assert "Usage and limits" in text
    assert "Runs today (UTC) this project 1 run 5 runs (organisation's own limit) 20.0%" in text
    assert (
        "Runs this month organisation 5 runs 50 runs (organisation's own limit) 10.0% within the limit"
        in text
    )
    assert "only an organisation OWNER can change them" in text
    assert len(dom.find("tr", **{"data-quota": "ingest_per_min"})) == 1


async def test_every_line_reads_in_words() -> None:
    line = UsageLine("projects", "Projects", "organisation", 5, 5, "projects", "owner")
    assert (line.percent, line.state, line.figure(5)) == (100.0, "limit reached", "5 projects")
    assert line.figure(1) == "1 project" and line.figure(1234) == "1,234 projects"
    storage = UsageLine("storage_bytes", "Storage", "organisation", 1_234_567, 10**9, "bytes", "o")
    assert storage.figure(storage.used) == "1.2 MB" and storage.figure(999) == "999 B"
    run = UsageLine("run_duration_sec", "Run", "project", 75, 900, "seconds", "operator")
    assert run.figure(75) == "1 min 15 s" and run.figure(900) == "15 min" and run.figure(0) == "0 s"
    assert storage.figure(10**9) == "1.0 GB"
