"""Compare: the exact risk delta, the default base skips runs that did not complete, and the
answer with no earlier completed run. Bundle: with two items edited, the first is named."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from cogumi.db.engine import transaction
from cogumi.reports import bundle as bundles
from cogumi.runs.models import Run, RunStatus
from tests.factories import Accounts
from tests.reports.helpers import campaigns
from tests.reports.test_reports import findings_of, report_text

WHAT = {"story_steps": "story step", "findings": "finding", "script_results": "script result"}


async def risk_of(client: httpx.AsyncClient, run_id: uuid.UUID) -> int:
    score = (await client.get(f"/api/runs/{run_id}")).json()["risk_score"]
    assert isinstance(score, int)
    return score


async def set_status(accounts: Accounts, run_id: uuid.UUID, status: RunStatus) -> None:
    async with transaction(accounts.sessionmaker) as session:
        run = await session.get(Run, run_id)
        assert run is not None
        run.status = status


def scripts(items: list[dict[str, Any]]) -> list[str]:
    return sorted(i["script_id"] for i in items)


async def test_compare_with_no_earlier_completed_run(app: FastAPI, accounts: Accounts) -> None:
    async with campaigns(app, accounts) as c:
        client = c.owner.client
        failed = await c.run({"S1"})
        await set_status(accounts, failed, RunStatus.failed)
        first = await c.run({"S1", "P07"})
        findings = await findings_of(client, first)
        response = await client.get(f"/api/runs/{first}/compare")
        assert response.status_code == 200, response.text
        body = response.json()
        # Documented in docs/reports.md: no base, no delta, everything is new.
        assert body["base_run"] is None and body["risk_delta"] is None
        assert body["run"]["id"] == str(first)
        assert sorted(i["fingerprint"] for i in body["new"]) == sorted(
            f["fingerprint"] for f in findings
        )
        assert body["persisting"] == [] and body["fixed"] == [] and body["regressions"] == []
        assert body["categories"] == [
            {"category": "secret_leakage", "before": 0, "after": 2, "delta": 2}
        ]
        await client.post(f"/api/runs/{first}/report")
        md = (await report_text(client, first)).text
        assert "No earlier completed run of this project to compare with." in md


async def test_default_base_skips_failed_and_canceled_runs_and_delta_is_exact(
    app: FastAPI, accounts: Accounts
) -> None:
    async with campaigns(app, accounts) as c:
        client = c.owner.client
        base = await c.run({"S1", "P07"})
        failed = await c.run({"P07"})
        await set_status(accounts, failed, RunStatus.failed)
        canceled = await c.run(set())
        await set_status(accounts, canceled, RunStatus.canceled)
        quota = await c.run({"S1"})
        await set_status(accounts, quota, RunStatus.stopped_quota)
        latest = await c.run(set())

        scores = {r: await risk_of(client, r) for r in (base, failed, canceled, quota, latest)}
        assert scores[base] > 0 and scores[latest] == 0  # the delta below is not trivially 0
        body = (await client.get(f"/api/runs/{latest}/compare")).json()
        assert body["base_run"]["id"] == str(base) and body["base_run"]["status"] == "completed"
        assert body["risk_delta"] == scores[latest] - scores[base]
        assert body["base_run"]["risk_score"] == scores[base]
        assert scripts(body["fixed"]) == ["P07", "S1"]  # against the failed run: only P07
        assert body["new"] == [] and body["persisting"] == []

        # With a run chosen explicitly, any status counts and the delta is still exact.
        versus_failed = (await client.get(f"/api/runs/{latest}/compare?with={failed}")).json()
        assert versus_failed["base_run"]["id"] == str(failed)
        assert versus_failed["risk_delta"] == scores[latest] - scores[failed]
        assert scripts(versus_failed["fixed"]) == ["P07"]
        rising = (await client.get(f"/api/runs/{quota}/compare?with={canceled}")).json()
        assert rising["risk_delta"] == scores[quota] - scores[canceled] > 0
        assert scripts(rising["new"]) == ["S1"]

        # A failed run's own default base is the completed run before it, too.
        of_failed = (await client.get(f"/api/runs/{failed}/compare")).json()
        assert of_failed["base_run"]["id"] == str(base)
        assert of_failed["risk_delta"] == scores[failed] - scores[base]
        assert scripts(of_failed["persisting"]) == ["P07"] and scripts(of_failed["fixed"]) == ["S1"]

        await client.post(f"/api/runs/{latest}/report")
        md = (await report_text(client, latest)).text
        delta = scores[latest] - scores[base]
        assert f"Compared with run `{base}`" in md and f"risk score change {delta}." in md


async def test_bundle_with_two_edits_names_the_first_in_document_order(
    app: FastAPI, accounts: Accounts
) -> None:
    async with campaigns(app, accounts) as c:
        run_id = await c.run({"S1"})
        raw = (await c.owner.client.get(f"/api/runs/{run_id}/bundle")).text
    original = json.loads(raw)
    assert bundles.verify(original).ok
    assert len(original["events"]) >= 4 and original["story_steps"] and original["findings"]
    assert original["script_results"]

    def edit(document: dict[str, Any], where: str) -> str:
        """Change one item; returns the words the verifier must name for it."""
        section, _, index = where.partition(":")
        if section in ("run", "config"):
            document[section]["tampered"] = True
            return f"{section}: content changed"
        item = document[section][int(index)]
        if section == "events":
            item["payload_redacted"] = {**(item["payload_redacted"] or {}), "summary": "edited"}
            return f"event {item['id']} (seq {item['seq']}): payload"
        item["tampered"] = True
        return f"{WHAT[section]} {item['id']}: content changed"

    # Pairs (first in document order, second); each edited in both orders of editing.
    pairs = [
        ("events:1", "events:3"),
        ("events:0", "findings:0"),
        ("run", "events:2"),
        ("config", "story_steps:0"),
        ("story_steps:0", "findings:0"),
        ("findings:0", "script_results:0"),
    ]
    for first, second in pairs:
        for order in ((first, second), (second, first)):
            document = json.loads(raw)
            named = {where: edit(document, where) for where in order}
            check = bundles.verify(document)
            assert not check.ok and check.root == original["manifest"]["root"]
            problem = check.problem or ""
            assert problem.startswith(named[first]), (order, problem)
            assert named[second] not in problem, (order, problem)
