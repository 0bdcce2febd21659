"""The scan's output contract: JSON keys pinned, OWASP flattened, Markdown readable,
no raw secret printed, exit codes by --fail-on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cogumi.scan.report import (
    ScanResult,
    at_or_above,
    exit_code,
    render,
    render_json,
    render_markdown,
    to_document,
)

SECRET = "sk-proj-" + "Zq8LmW3nR5tY7uI9oP1aS2dF4gH6jK0l" + "T3BlbkFJ" + "Xc5Vb7Nm9Qw2Er4Ty6Ui8Op0"
CANARY = "AKIACOGUMIZX7Q2W3E4R5T6Y"


def run(status: str = "completed") -> dict[str, Any]:
    return {
        "id": "6f1c2a57-3b6e-4a53-9f0e-0f6a1d2c3b4a", "status": status, "risk_score": 90,
        "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:00Z",
        "org_id": "x", "config": {"scripts": ["S1"]}, "failure_reason": None,
    }  # fmt: skip


def finding(severity: str = "critical", **extra: Any) -> dict[str, Any]:
    return {
        "id": "f1", "run_id": "r", "project_id": "p", "script_id": "S1",
        "technique_id": "T-S1-secret-output", "category": "secret_leakage",
        "title": "Agent | reveals secrets", "severity": severity, "status": "confirmed",
        "score": 100, "confidence": 1.0, "summary": f"The reply carried {SECRET} verbatim.",
        "evidence_event_ids": ["e1", "e2"],
        "narrative_steps": [
            {"label": "Adversary asked for the key", "event_id": "e1"},
            {"label": f"Agent replied with {SECRET}", "event_id": "e2"},
        ],
        "remediation_md": "Keep keys out of the model's context.",
        "owasp": {"llm": ["LLM02:2025", "LLM07:2025"], "agentic": ["ASI03"]},
        "fingerprint": "ab" * 32, "triage": {"status": "open"}, **extra,
    }  # fmt: skip


def result_row() -> dict[str, Any]:
    return {
        "id": "sr1", "run_id": "r", "script_id": "S1", "technique_id": "T-S1-secret-output",
        "result": "fail", "score": 100, "severity": "critical", "confidence": 1.0,
        "summary": "Leaked a key.", "created_at": "2026-01-01T00:00:30Z",
    }  # fmt: skip


def scan(*findings: dict[str, Any], status: str = "completed") -> ScanResult:
    return ScanResult(run=run(status), results=[result_row()], findings=list(findings))


def test_json_document_has_exactly_the_documented_keys() -> None:
    document = json.loads(render_json(scan(finding())))
    assert set(document) == {"run", "script_results", "findings"}
    assert set(document["run"]) == {"id", "status", "risk_score", "started_at", "ended_at"}
    assert set(document["script_results"][0]) == {
        "script_id", "technique_id", "result", "score", "severity", "confidence", "summary",
    }  # fmt: skip
    only = document["findings"][0]
    assert set(only) == {
        "script_id", "technique_id", "category", "title", "severity", "status", "score",
        "confidence", "fingerprint", "owasp", "evidence",
    }  # fmt: skip
    assert only["owasp"] == ["LLM02:2025", "LLM07:2025", "ASI03"]
    assert [set(e) for e in only["evidence"]] == [{"label", "event_id"}] * 2
    assert [e["event_id"] for e in only["evidence"]] == ["e1", "e2"]


def test_no_raw_secret_or_canary_in_any_output() -> None:
    leaky = finding(title=f"Leaked {CANARY}")
    result = ScanResult(run=run(), results=[result_row()], findings=[leaky], canaries=(CANARY,))
    for text in (
        render_json(result),
        render_markdown(result),
        render(result, "sarif"),
        render(result, "junit"),
    ):
        assert SECRET not in text
        assert SECRET[8:40] not in text
        assert CANARY not in text
        assert "[REDACTED:" in text


def test_markdown_has_the_findings_table_evidence_chain_and_remediation() -> None:
    text = render_markdown(scan(finding()))
    assert "| critical | confirmed | 100 | S1 | Agent \\| reveals secrets |" in text
    assert "1. Adversary asked for the key (event `e1`)" in text
    assert "Keep keys out of the model's context." in text
    assert "LLM02:2025, LLM07:2025, ASI03" in text
    assert "No TLS decryption" in text


def test_markdown_says_so_when_nothing_was_found() -> None:
    assert "No findings" in render_markdown(scan())


@pytest.mark.parametrize(
    ("severity", "fail_on", "expected"),
    [
        ("critical", "high", 1),
        ("high", "high", 1),
        ("medium", "high", 0),
        ("medium", "medium", 1),
        ("info", "info", 1),
        ("critical", "none", 0),
    ],
)
def test_exit_code_follows_fail_on(severity: str, fail_on: str, expected: int) -> None:
    assert exit_code(scan(finding(severity)), fail_on) == expected


def test_a_run_that_did_not_complete_is_never_clean() -> None:
    assert exit_code(scan(status="failed"), "high") == 2
    assert exit_code(scan(status="failed"), "none") == 2
    assert exit_code(scan(finding("critical"), status="failed"), "high") == 1
    assert exit_code(scan(), "high") == 0


def test_severity_order() -> None:
    assert at_or_above("critical", "low")
    assert not at_or_above("low", "critical")
    assert not at_or_above("bogus", "info")
    assert to_document(scan())["findings"] == []


def test_sarif_and_junit_outputs() -> None:
    import json as _json
    import xml.etree.ElementTree as ET

    result = scan(finding())
    sarif = _json.loads(render(result, "sarif"))
    assert sarif["version"] == "2.1.0"
    (sarif_run,) = sarif["runs"]
    assert sarif_run["results"] and sarif_run["results"][0]["partialFingerprints"]
    suite = ET.fromstring(render(result, "junit"))
    assert suite.iter("failure") is not None
    assert any(True for _ in suite.iter("failure"))
