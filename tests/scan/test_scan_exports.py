"""``cogumi scan --format sarif|junit`` as real processes against the vulnerable demo agent:
the SARIF validates against the OASIS 2.1.0 schema, the JUnit parses, and neither prints
the secret the agent leaks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.scan.processes import SECRET, cogumi, demo_agent

pytestmark = pytest.mark.e2e

SCHEMA = json.loads((Path(__file__).parents[1] / "reports" / "sarif-schema-2.1.0.json").read_text())
SCRIPTS = "S1,S3"


def test_scan_sarif_and_junit_from_a_real_campaign(tmp_path: Path) -> None:
    sarif_path = tmp_path / "scan.sarif"
    with demo_agent("vulnerable") as agent:
        sarif_run = cogumi("scan", "--target", agent.url, "--scripts", SCRIPTS,
                           "--format", "sarif", "--out", str(sarif_path))  # fmt: skip
        junit_run = cogumi("scan", "--target", agent.url, "--scripts", SCRIPTS,
                           "--format", "junit")  # fmt: skip
    assert sarif_run.returncode == 1, sarif_run.stderr  # the agent leaks: the build fails
    assert junit_run.returncode == 1, junit_run.stderr
    sarif_text, junit_text = sarif_path.read_text(), junit_run.stdout
    for text in (sarif_text, junit_text, sarif_run.stderr, junit_run.stderr):
        assert SECRET not in text and SECRET[8:40] not in text

    sarif = json.loads(sarif_text)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules[:1] == ["T-S1-secret-output"] and len(rules) == len(set(rules)) == 2
    leak = [r for r in run["results"] if r["ruleId"] == "T-S1-secret-output"]
    assert len(leak) == 1 and leak[0]["level"] == "error"
    assert leak[0]["ruleIndex"] == rules.index("T-S1-secret-output")
    assert len(leak[0]["partialFingerprints"]["cogumiFindingFingerprint/v1"]) == 64
    for result in run["results"]:
        assert (
            0 <= result["ruleIndex"] < len(rules) and rules[result["ruleIndex"]] == result["ruleId"]
        )

    root = ET.fromstring(junit_text.encode())
    cases = {c.get("name", "").split(":")[0]: c for c in root.iter("testcase")}
    assert set(cases) == set(rules)
    failure = cases["T-S1-secret-output"].find("failure")
    assert failure is not None and failure.get("type") == "critical" and failure.text
    suites = [root, *root.iter("testsuite")]
    assert any(s.get("tests") == "2" for s in suites)
    failed = sum(1 for c in cases.values() if c.find("failure") is not None)
    assert any(s.get("failures") == str(failed) for s in suites) and failed >= 1
