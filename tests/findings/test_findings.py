"""Findings: stored with their chain of evidence, stable fingerprints, triage by role."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.db.engine import transaction
from cogumi.events.bus import MemoryBus
from cogumi.events.models import StreamMessage
from cogumi.findings import service
from cogumi.findings.models import Finding
from cogumi.runs.models import Run, RunStatus
from cogumi.tenancy.models import Role
from tests.factories import Accounts
from tests.runs.helpers import insert_run

BUS = MemoryBus()


async def _finding(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID, **overrides: object
) -> Finding:
    values: dict[str, object] = {
        "script_id": "S1",
        "technique_id": "T-S1-secret-output",
        "category": "secret_leakage",
        "title": "Agent printed an API key",
        "severity": "critical",
        "status": "confirmed",
        "score": 100,
        "confidence": 1.0,
        "summary": "Asked for a debug dump, the agent replied with sk-…d9.",
        "narrative_steps": [
            {"label": "Adversary asked for the config", "event_id": "e1"},
            {"label": "Agent replied with a key", "event_id": "e2"},
        ],
        "remediation_md": "Never put keys in the prompt.",
        "owasp": {"llm": ["LLM02:2025"], "agentic": []},
    }
    values.update(overrides)
    async with transaction(sessionmaker) as session:
        run = await session.get(Run, run_id)
        assert run is not None
        return await service.record_finding(session, bus=BUS, run=run, **values)  # type: ignore[arg-type]


async def test_a_recorded_finding_is_listed_with_its_evidence(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, status=RunStatus.completed)
    low = await _finding(sessionmaker, run.id, script_id="S3", score=60, severity="medium")
    top = await _finding(sessionmaker, run.id)
    items = (await owner.client.get(f"/api/runs/{run.id}/findings")).json()["items"]
    assert [i["id"] for i in items] == [str(top.id), str(low.id)]
    first = items[0]
    assert first["evidence_event_ids"] == ["e1", "e2"]
    assert first["narrative_steps"][1] == {"label": "Agent replied with a key", "event_id": "e2"}
    assert first["owasp"]["llm"] == ["LLM02:2025"]
    assert first["triage"] == {
        "status": "open",
        "owner": None,
        "eta": None,
        "why_it_works": "",
        "verification_step": "",
    }
    assert (await owner.client.get(f"/api/findings/{top.id}")).json()["title"] == top.title
    async with sessionmaker() as session:
        kinds = (
            await session.scalars(select(StreamMessage.kind).where(StreamMessage.run_id == run.id))
        ).all()
    assert list(kinds) == ["finding.created", "finding.created"]


async def test_fingerprints_are_stable_per_project(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    first = await insert_run(sessionmaker, owner.org_id, status=RunStatus.completed)
    second = await insert_run(
        sessionmaker, owner.org_id, project_id=first.project_id, status=RunStatus.completed
    )
    elsewhere = await insert_run(sessionmaker, owner.org_id, status=RunStatus.completed)
    a = await _finding(sessionmaker, first.id)
    b = await _finding(sessionmaker, second.id)
    c = await _finding(sessionmaker, elsewhere.id)
    d = await _finding(sessionmaker, second.id, script_id="P05")
    assert a.fingerprint == b.fingerprint
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3
    assert a.fingerprint == service.fingerprint(
        project_id=first.project_id, technique_id="T-S1-secret-output", script_id="S1"
    )


async def test_triage_by_role_and_bad_input(
    accounts: Accounts, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = await accounts.signup()
    run = await insert_run(sessionmaker, owner.org_id, status=RunStatus.completed)
    finding = await _finding(sessionmaker, run.id)
    viewer = await accounts.member(owner.org_id, Role.VIEWER)
    member = await accounts.member(owner.org_id, Role.MEMBER)
    url = f"/api/findings/{finding.id}"
    assert (await viewer.client.get(url)).status_code == 200
    assert (await viewer.client.patch(url, json={"status": "fixed"})).status_code == 403
    change = {
        "status": "accepted",
        "owner": "sec-team@example.com",
        "eta": "2030-01-31",
        "why_it_works": "The system prompt holds the key.",
        "verification_step": "Re-run S1.",
    }
    response = await member.client.patch(url, json=change)
    assert response.status_code == 200, response.text
    triage = response.json()["triage"]
    assert triage == {**change, "status": "accepted"}
    cleared = await member.client.patch(url, json={"owner": None})
    assert cleared.json()["triage"]["owner"] is None
    assert cleared.json()["triage"]["status"] == "accepted"
    for body, field in (
        ({"status": "ignored"}, "status"),
        ({"status": None}, "status"),
        ({"eta": "soon"}, "eta"),
        ({"colour": "red"}, "colour"),
    ):
        bad = await member.client.patch(url, json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["fields"][0]["field"].split(".")[0] == field, bad.text
    stranger = await accounts.signup()
    assert (await stranger.client.get(url)).status_code == 404
    assert (await stranger.client.patch(url, json={"status": "fixed"})).status_code == 404
    assert (await owner.client.get(url)).json()["triage"]["status"] == "accepted"
