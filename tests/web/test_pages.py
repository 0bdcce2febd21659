"""Server-rendered pages without a browser: access, escaping, isolation, content with a large run.

HTML is checked by parsing it, not by substring luck.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from cogumi.db.base import utcnow
from cogumi.db.engine import transaction
from cogumi.events.models import Event
from cogumi.findings.models import Finding, FindingStatus
from cogumi.runs.models import Run, RunStatus, Severity, StepKind, StoryStep
from cogumi.tenancy.models import Role
from tests.factories import Accounts

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


class Dom(HTMLParser):
    """Elements (tag, attrs) and the text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_data_script = False
        self.data_blocks: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_data_script = tag == "script" and dict(attrs).get("type") == "application/json"

    def handle_endtag(self, tag: str) -> None:
        self._in_data_script = False

    def handle_data(self, data: str) -> None:
        (self.data_blocks if self._in_data_script else self.text).append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]

    def having(self, attr: str) -> list[tuple[str, dict[str, str | None]]]:
        return [(t, a) for t, a in self.elements if attr in a]


async def page(client: httpx.AsyncClient, path: str) -> Dom:
    response = await client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return Dom(response.text)


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/", "/projects", f"/projects/{uuid.uuid4()}", f"/runs/{uuid.uuid4()}", "/org"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    login = await client.get("/login?next=//evil.example/x")
    form = Dom(login.text).find("form")[0]
    assert form["data-redirect"] == "/"  # no open redirect after login


async def test_static_assets_are_served_from_the_package(client: httpx.AsyncClient) -> None:
    for name in ("app.css", "app.js", "run.js", "projects.js", "org.js", "favicon.svg"):
        response = await client.get(f"/static/{name}")
        assert response.status_code == 200, name
    for name in ("app.js", "run.js", "projects.js", "org.js"):
        assert "innerHTML" not in (await client.get(f"/static/{name}")).text


async def test_hostile_names_are_escaped(accounts: Accounts) -> None:
    owner = await accounts.signup()
    created = await owner.client.post(
        "/api/projects", json={"name": HOSTILE, "description": HOSTILE}
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    for path in ("/", "/projects", f"/projects/{pid}", f"/projects/{pid}/settings",
                 f"/projects/{pid}/connect?step=2"):  # fmt: skip
        dom = await page(owner.client, path)
        assert dom.find("img", src="x") == [], path
        assert [a for _, a in dom.having("onerror")] == [], path
        assert all((s.get("src") or "").startswith("/static/") for s in dom.find("script")), path
        assert any(HOSTILE in chunk for chunk in dom.text) or path == "/", path


async def test_other_orgs_objects_are_not_found(accounts: Accounts) -> None:
    owner = await accounts.signup()
    other = await accounts.signup()
    pid = (await owner.client.post("/api/projects", json={"name": "mine"})).json()["id"]
    for path in (f"/projects/{pid}", f"/projects/{pid}/settings", f"/projects/{pid}/connect",
                 "/projects/not-a-uuid", f"/runs/{uuid.uuid4()}"):  # fmt: skip
        response = await other.client.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]


async def test_viewer_pages_have_no_write_controls(accounts: Accounts) -> None:
    owner = await accounts.signup()
    pid = (await owner.client.post("/api/projects", json={"name": "ro"})).json()["id"]
    viewer = await accounts.member(owner.org_id, Role.VIEWER)
    for path in (f"/projects/{pid}", f"/projects/{pid}/settings"):
        dom = await page(viewer.client, path)
        assert dom.having("data-api") == [] and dom.having("data-api-action") == [], path
        assert dom.having("data-start-run") == [] and dom.having("data-create-token") == []
    org = await page(viewer.client, "/org")
    assert org.having("data-invite") == [] and org.having("data-member-role") == []
    writer = await page(owner.client, f"/projects/{pid}")
    assert writer.having("data-start-run")


async def test_prod_project_blocks_the_start_button(accounts: Accounts) -> None:
    owner = await accounts.signup()
    pid = (
        await owner.client.post("/api/projects", json={"name": "p", "environment": "prod"})
    ).json()["id"]
    dom = await page(owner.client, f"/projects/{pid}")
    buttons = [a for a in dom.find("button") if "disabled" in a]
    assert buttons and not dom.having("data-start-run")
    staging = (
        await owner.client.post("/api/projects", json={"name": "s", "environment": "staging"})
    ).json()
    start = (await page(owner.client, f"/projects/{staging['id']}")).having("data-start-run")
    assert start and "Staging" in (start[0][1]["data-confirm"] or "")


async def seed_big_run(
    accounts: Accounts, org_id: uuid.UUID, project_id: uuid.UUID, n: int
) -> uuid.UUID:
    """A completed run with ``n`` events, a story step per 20 events and some findings."""
    run_id = uuid.uuid4()
    start = utcnow() - timedelta(minutes=5)
    async with transaction(accounts.sessionmaker) as session:
        session.add(Run(id=run_id, org_id=org_id, project_id=project_id, status=RunStatus.completed,
                        started_at=start, ended_at=utcnow(), risk_score=88, last_seq=n))  # fmt: skip
        await session.flush()
        for seq in range(1, n + 1):
            actor = "adversary" if seq % 2 else "target"
            session.add(Event(
                id=uuid.uuid4(), org_id=org_id, project_id=project_id, run_id=run_id, seq=seq,
                ts=start + timedelta(milliseconds=seq), channel="system", type="agent.message",
                actor=actor, payload_redacted={"summary": HOSTILE, "text_redacted": HOSTILE * 3,
                                               "script_id": "S1"},
                matches=[], integrity_hash="0" * 64))  # fmt: skip
        for i in range(n // 20):
            finding_id = None
            if i % 10 == 0:
                finding_id = uuid.uuid4()
                session.add(Finding(
                    id=finding_id, org_id=org_id, run_id=run_id, project_id=project_id,
                    script_id="S1", technique_id=f"T-{i}", category="secret_leakage",
                    title=HOSTILE, severity=Severity.high, status=FindingStatus.confirmed,
                    score=90, confidence=0.9, summary=HOSTILE, fingerprint=f"{run_id.hex}{i}"))  # fmt: skip
                await session.flush()
            session.add(StoryStep(
                id=uuid.uuid4(), org_id=org_id, run_id=run_id, seq_start=i * 20 + 1,
                seq_end=i * 20 + 20, script_id="S1",
                step_kind=StepKind.confirmed if finding_id else StepKind.attempt,
                severity=Severity.high, claim_title=HOSTILE, claim_summary=HOSTILE,
                evidence_event_ids=[], finding_id=finding_id))  # fmt: skip
    return run_id


@pytest.mark.parametrize("events", [1000])
async def test_pages_render_a_run_of_a_thousand_events(accounts: Accounts, events: int) -> None:
    """Content with a large run; the 300 ms server-time budget is measured by bench/pages_bench.py."""
    owner = await accounts.signup()
    pid = (await owner.client.post("/api/projects", json={"name": "big"})).json()["id"]
    run_id = await seed_big_run(accounts, owner.org_id, uuid.UUID(pid), events)
    for path in (f"/runs/{run_id}", "/", f"/projects/{pid}", "/projects"):
        response = await owner.client.get(path)
        assert response.status_code == 200, path
    dom = Dom((await owner.client.get(f"/runs/{run_id}")).text)
    data: dict[str, Any] = json.loads("".join(dom.data_blocks))
    assert len(data["story"]) == events // 20
    assert data["findings"][0]["title"] == HOSTILE  # inert JSON, escaped by the browser-side code
    assert dom.find("img", src="x") == []
    # the browser pages the events in: the API serves them in bounded pages, in order
    first = await owner.client.get(f"/api/runs/{run_id}/events?limit=1000")
    assert [e["seq"] for e in first.json()["items"]] == list(range(1, events + 1))


async def test_run_page_report_controls_follow_the_role_and_the_report(
    accounts: Accounts,
) -> None:
    owner = await accounts.signup()
    pid = (await owner.client.post("/api/projects", json={"name": "rep"})).json()["id"]
    run_id = await seed_big_run(accounts, owner.org_id, uuid.UUID(pid), 40)
    viewer = await accounts.member(owner.org_id, Role.VIEWER)

    def links(dom: Dom) -> list[bool]:
        """Whether View report and Download .md are shown (not hidden)."""
        return [
            "hidden" not in dom.having(attr)[0][1]
            for attr in ("data-report-view", "data-report-md")
        ]

    before = await page(owner.client, f"/runs/{run_id}")
    [(_, button)] = before.having("data-report-generate")
    assert "hidden" not in button  # a finished run: generate at once
    assert links(before) == [False, False]
    assert json.loads("".join(before.data_blocks))["report"] is None
    assert (await page(viewer.client, f"/runs/{run_id}")).having("data-report-generate") == []

    made = await owner.client.post(f"/api/runs/{run_id}/report")
    assert made.status_code == 202, made.text
    for client in (owner.client, viewer.client):
        after = await page(client, f"/runs/{run_id}")
        assert links(after) == [True, True]
        assert json.loads("".join(after.data_blocks))["report"] == {"version": 1}
        assert any("Report v1" in chunk for chunk in after.text)
    [(_, view)] = (await page(owner.client, f"/runs/{run_id}")).having("data-report-view")
    assert view["href"] == f"/api/runs/{run_id}/report?format=html"
    assert view["target"] == "_blank"
    assert (await page(viewer.client, f"/runs/{run_id}")).having("data-report-generate") == []
