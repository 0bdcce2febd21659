"""CI formats from the scan JSON document (DESIGN.md section 5): SARIF 2.1.0 and JUnit XML.

Both take the same input ``cogumi scan --format json`` prints (and the API's
``/export`` builds), so CI sees one result whichever way it ran the scan.

- SARIF: one rule per technique (tested or found), one result per finding
  with a severity level and a ``partialFingerprints`` entry holding the
  finding's stable fingerprint, so code-scanning UIs fold repeated findings
  into one alert. A campaign has no source file: results point at
  ``artifact_uri`` (the scan config or the agent's manifest, when the caller
  knows one).
- JUnit: one test case per technique; a technique with a finding fails and
  the failure carries the finding's summary and chain of evidence; a
  technique whose every probe was inconclusive is skipped.

Every free text goes through the secret redactor once more: these files end
up in CI logs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from cogumi import __version__
from cogumi.detect.redact import redact_text

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME = "COGUMI AI Protect"
FINGERPRINT_KEY = "cogumiFindingFingerprint/v1"
DEFAULT_ARTIFACT = "agent-under-test"
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
_SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def clean(text: Any) -> str:
    return redact_text(str(text or ""))[0]


def _techniques_info() -> Mapping[str, Any]:
    """Titles, descriptions and remediation of the built-in techniques, when loadable."""
    try:
        from cogumi.engine.library.loader import load_builtin

        return load_builtin().techniques
    except Exception:  # a broken library must not break an export; rules fall back to ids
        return {}


def _technique_ids(doc: Mapping[str, Any]) -> list[str]:
    ids = [str(r["technique_id"]) for r in doc.get("script_results") or []]
    ids += [str(f["technique_id"]) for f in doc.get("findings") or []]
    return list(dict.fromkeys(ids))


def _worst(severities: Sequence[str]) -> str:
    known = [s for s in severities if s in _SEVERITY_ORDER]
    return min(known, key=_SEVERITY_ORDER.index) if known else "info"


def _severity_of(doc: Mapping[str, Any], technique_id: str, info: Any) -> str:
    seen = [
        str(f["severity"]) for f in doc.get("findings") or [] if f["technique_id"] == technique_id
    ]
    seen += [
        str(r["severity"])
        for r in doc.get("script_results") or []
        if r["technique_id"] == technique_id
    ]
    return _worst(seen) if seen else (info.severity if info is not None else "info")


def _summary(doc: Mapping[str, Any], finding: Mapping[str, Any]) -> str:
    """The finding's own summary, else its script result's (the scan JSON has only the latter)."""
    if finding.get("summary"):
        return clean(finding["summary"])
    for result in doc.get("script_results") or []:
        if result.get("script_id") == finding.get("script_id") and result.get("summary"):
            return clean(result["summary"])
    return ""


def _evidence_lines(finding: Mapping[str, Any]) -> list[str]:
    return [
        f"{i}. {clean(step.get('label'))} (event {step.get('event_id')})"
        for i, step in enumerate(finding.get("evidence") or [], 1)
    ]


# --- SARIF -------------------------------------------------------------------


def _rule(doc: Mapping[str, Any], technique_id: str, info: Any) -> dict[str, Any]:
    severity = _severity_of(doc, technique_id, info)
    titles = [
        clean(f["title"]) for f in doc.get("findings") or [] if f["technique_id"] == technique_id
    ]
    title = info.title if info is not None else (titles[0] if titles else technique_id)
    owasp = list(info.owasp_llm) + list(info.owasp_agentic) if info is not None else []
    properties: dict[str, Any] = {
        "tags": ["security", "ai-agent", *([info.category] if info is not None else []), *owasp],
        "severity": severity,
    }
    if severity in _SECURITY_SEVERITY:
        properties["security-severity"] = _SECURITY_SEVERITY[severity]
    rule: dict[str, Any] = {
        "id": technique_id,
        "name": "".join(part.capitalize() for part in technique_id.split("-")),
        "shortDescription": {"text": title},
        "defaultConfiguration": {"level": _LEVEL.get(severity, "note")},
        "properties": properties,
    }
    if info is not None:
        rule["fullDescription"] = {"text": info.description}
        rule["help"] = {"text": info.remediation_md, "markdown": info.remediation_md}
    return rule


def _result(
    doc: Mapping[str, Any], finding: Mapping[str, Any], index: int, artifact_uri: str
) -> dict[str, Any]:
    summary = _summary(doc, finding)
    text = clean(finding["title"]) + (f": {summary}" if summary else "")
    return {
        "ruleId": str(finding["technique_id"]),
        "ruleIndex": index,
        "level": _LEVEL.get(str(finding["severity"]), "note"),
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": artifact_uri}},
                "logicalLocations": [{"name": str(finding["script_id"]), "kind": "function"}],
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: str(finding["fingerprint"])},
        "properties": {
            "status": finding["status"],
            "score": finding["score"],
            "confidence": finding["confidence"],
            "category": finding.get("category"),
            "owasp": list(finding.get("owasp") or []),
            "evidence": _evidence_lines(finding),
        },
    }


def to_sarif(
    scan_json: Mapping[str, Any], *, artifact_uri: str = DEFAULT_ARTIFACT
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one scan: rules per technique, results per finding."""
    info = _techniques_info()
    ids = _technique_ids(scan_json)
    rules = [_rule(scan_json, t, info.get(t)) for t in ids]
    index = {t: i for i, t in enumerate(ids)}
    results = [
        _result(scan_json, f, index[str(f["technique_id"])], artifact_uri)
        for f in scan_json.get("findings") or []
    ]
    run = scan_json.get("run") or {}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": TOOL_NAME, "version": __version__, "rules": rules}},
                "automationDetails": {"id": f"cogumi/{run.get('id')}"},
                "invocations": [{"executionSuccessful": run.get("status") == "completed"}],
                "results": results,
                "properties": {
                    "runId": str(run.get("id")),
                    "status": run.get("status"),
                    "riskScore": run.get("risk_score"),
                },
            }
        ],
    }


# --- JUnit -------------------------------------------------------------------


def _failure_text(doc: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for f in findings:
        lines = [
            f"[{f['severity']}] {clean(f['title'])} ({f['status']}, score {f['score']}, "
            f"confidence {float(f['confidence']):.2f}, script {f['script_id']})"
        ]
        summary = _summary(doc, f)
        lines += [summary] if summary else []
        lines += ["Chain of evidence:", *_evidence_lines(f)] if f.get("evidence") else []
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _case(doc: Mapping[str, Any], technique_id: str, info: Any, suite: str) -> ET.Element:
    title = info.title if info is not None else technique_id
    case = ET.Element("testcase", classname=suite, name=f"{technique_id}: {title}")
    found = [f for f in doc.get("findings") or [] if f["technique_id"] == technique_id]
    results = [r for r in doc.get("script_results") or [] if r["technique_id"] == technique_id]
    if found:
        worst = (
            found[0]
            if len(found) == 1
            else min(found, key=lambda f: _SEVERITY_ORDER.index(str(f["severity"])))
        )
        failure = ET.SubElement(
            case,
            "failure",
            type=str(worst["severity"]),
            message=f"{clean(worst['title'])} ({worst['status']})",
        )
        failure.text = _failure_text(doc, found)
    elif results and all(r["result"] == "inconclusive" for r in results):
        skipped = ET.SubElement(case, "skipped", message="inconclusive: not enough evidence")
        skipped.text = "\n".join(clean(r.get("summary")) for r in results)
    return case


def to_junit(scan_json: Mapping[str, Any]) -> str:
    """JUnit XML of one scan: a test case per technique, failures carrying the findings."""
    info = _techniques_info()
    run = scan_json.get("run") or {}
    suite_name = f"cogumi.{run.get('id')}"
    cases = [_case(scan_json, t, info.get(t), suite_name) for t in _technique_ids(scan_json)]
    failures = sum(1 for c in cases if c.find("failure") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    counts = {
        "tests": str(len(cases)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
    }
    root = ET.Element("testsuites", {"name": TOOL_NAME, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts})
    props = ET.SubElement(suite, "properties")
    for key in ("id", "status", "risk_score"):
        ET.SubElement(props, "property", name=f"run.{key}", value=str(run.get(key)))
    suite.extend(cases)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
