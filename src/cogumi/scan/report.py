"""What a scan prints: the stable JSON document, the Markdown summary, the exit code.

Both scan modes (embedded store, remote server) hand over the same API-shaped
dicts (``RunOut``, ``ScriptResultOut``, ``FindingOut`` as JSON), so the output
cannot drift between them. The JSON keys are a contract for CI pipelines
(docs/scan.md; a test pins them): they may grow, never change.

Every free-text field goes through the secret redactor once more before it is
printed. The engine already stores previews only; this is the last line of
defence, because a scan's output ends up in CI logs that many people read.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cogumi.detect.redact import redact_text

SEVERITIES = ("critical", "high", "medium", "low", "info")
FAIL_ON = (*SEVERITIES, "none")
RUN_KEYS = ("id", "status", "risk_score", "started_at", "ended_at")
RESULT_KEYS = ("script_id", "technique_id", "result", "score", "severity", "confidence", "summary")
FINDING_KEYS = (
    "script_id", "technique_id", "category", "title", "severity", "status", "score",
    "confidence", "fingerprint", "owasp", "evidence",
)  # fmt: skip
EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class ScanResult:
    """One finished (or ended) run as the API describes it."""

    run: Mapping[str, Any]
    results: Sequence[Mapping[str, Any]]
    findings: Sequence[Mapping[str, Any]]
    canaries: Collection[str] = field(default=(), repr=False)
    run_url: str | None = None

    def clean(self, text: Any) -> str:
        """``text`` with every detected secret (and known canary) masked."""
        return redact_text(str(text or ""), canaries=self.canaries)[0]


def owasp_ids(owasp: Mapping[str, Any] | None) -> list[str]:
    """``{"llm": [...], "agentic": [...]}`` -> one flat list of ids, LLM first."""
    owasp = owasp or {}
    ids = [*(owasp.get("llm") or []), *(owasp.get("agentic") or [])]
    return [str(i) for i in dict.fromkeys(ids)]


def _finding(result: ScanResult, row: Mapping[str, Any]) -> dict[str, Any]:
    evidence = [
        {"label": result.clean(step.get("label")), "event_id": str(step.get("event_id", ""))}
        for step in row.get("narrative_steps") or []
    ]
    return {
        "script_id": row["script_id"],
        "technique_id": row["technique_id"],
        "category": row["category"],
        "title": result.clean(row["title"]),
        "severity": row["severity"],
        "status": row["status"],
        "score": row["score"],
        "confidence": row["confidence"],
        "fingerprint": row["fingerprint"],
        "owasp": owasp_ids(row.get("owasp")),
        "evidence": evidence,
    }


def to_document(result: ScanResult) -> dict[str, Any]:
    """The ``--format json`` document (DESIGN.md §5)."""
    run = {key: result.run.get(key) for key in RUN_KEYS}
    run["id"] = str(run["id"])
    results = [
        {key: (result.clean(r[key]) if key == "summary" else r[key]) for key in RESULT_KEYS}
        for r in result.results
    ]
    findings = [_finding(result, row) for row in result.findings]
    return {"run": run, "script_results": results, "findings": findings}


def render_json(result: ScanResult) -> str:
    return json.dumps(to_document(result), indent=2) + "\n"


def _cell(text: Any) -> str:
    """Markdown table cell: no pipes or line breaks from untrusted text."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _findings_table(result: ScanResult) -> list[str]:
    if not result.findings:
        return ["No findings: the agent resisted every attack in this campaign.", ""]
    lines = [
        "| Severity | Status | Score | Script | Finding | OWASP |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.findings:
        lines.append(
            f"| {row['severity']} | {row['status']} | {row['score']} | {_cell(row['script_id'])} "
            f"| {_cell(result.clean(row['title']))} | {', '.join(owasp_ids(row.get('owasp')))} |"
        )
    return [*lines, ""]


def _finding_section(result: ScanResult, row: Mapping[str, Any]) -> list[str]:
    lines = [
        f"### {_cell(result.clean(row['title']))}",
        "",
        f"- **Severity** {row['severity']} · **status** {row['status']} · "
        f"**score** {row['score']} · **confidence** {float(row['confidence']):.2f}",
        f"- **Technique** `{row['technique_id']}` ({row['category']}), script `{row['script_id']}`",
        f"- **Fingerprint** `{row['fingerprint']}`",
        "",
        result.clean(row.get("summary")),
        "",
        "**Chain of evidence**",
        "",
    ]
    steps = row.get("narrative_steps") or []
    lines += [
        f"{i}. {_cell(result.clean(s.get('label')))} (event `{s.get('event_id')}`)"
        for i, s in enumerate(steps, 1)
    ] or ["(no evidence events recorded)"]
    remediation = result.clean(row.get("remediation_md")).strip()
    if remediation:
        lines += ["", "**Remediation**", "", remediation]
    return [*lines, ""]


def render_markdown(result: ScanResult) -> str:
    run = result.run
    risk = run.get("risk_score")
    lines = [
        "# COGUMI AI Protect scan",
        "",
        f"- **Run** `{run.get('id')}` · **status** {run.get('status')}",
        f"- **Risk score** {risk if risk is not None else 'n/a'} / 100",
        f"- **Started** {run.get('started_at') or '-'} · **ended** {run.get('ended_at') or '-'}",
    ]
    if result.run_url:
        lines.append(f"- **Run page** {result.run_url}")
    if run.get("failure_reason"):
        lines.append(f"- **Failure** {result.clean(run['failure_reason'])}")
    lines += ["", "## Findings", "", *_findings_table(result)]
    for row in result.findings:
        lines += _finding_section(result, row)
    lines += ["## Script results", "", "| Script | Technique | Result | Score | Severity |",
              "|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {_cell(r['script_id'])} | {_cell(r['technique_id'])} | {r['result']} "
        f"| {r['score']} | {r['severity']} |"
        for r in result.results
    ]
    lines += [
        "",
        "_Pre-deployment test. No TLS decryption: HTTPS payloads are invisible, "
        "only their destinations and sizes are seen._",
        "",
    ]
    return "\n".join(lines)


def render(result: ScanResult, fmt: str) -> str:
    """The scan output in ``fmt``; SARIF and JUnit are built from the JSON document."""
    if fmt == "md":
        return render_markdown(result)
    if fmt == "sarif":
        from cogumi.reports.formats import to_sarif

        return json.dumps(to_sarif(to_document(result)), indent=2) + "\n"
    if fmt == "junit":
        from cogumi.reports.formats import to_junit

        return to_junit(to_document(result))
    return render_json(result)


def at_or_above(severity: str, threshold: str) -> bool:
    """True when ``severity`` is as bad as ``threshold`` or worse (``none`` never)."""
    if threshold == "none" or severity not in SEVERITIES:
        return False
    return SEVERITIES.index(severity) <= SEVERITIES.index(threshold)


def exit_code(result: ScanResult, fail_on: str) -> int:
    """1 when a finding reaches ``fail_on``; else 2 when the run did not complete; else 0.

    A run that failed or was cut short proves nothing about the agent, so CI
    must not read it as clean.
    """
    if any(at_or_above(str(f["severity"]), fail_on) for f in result.findings):
        return EXIT_FINDINGS
    if result.run.get("status") != "completed":
        return EXIT_ERROR
    return EXIT_CLEAN


def summary_lines(result: ScanResult) -> list[str]:
    """A few plain lines for the terminal (stderr): status, risk and the findings."""
    run = result.run
    lines = [
        f"run {run.get('id')} {run.get('status')}, risk score "
        f"{run.get('risk_score') if run.get('risk_score') is not None else 'n/a'}, "
        f"{len(result.findings)} finding(s)"
    ]
    if run.get("failure_reason"):
        lines.append(f"  failure: {result.clean(run['failure_reason'])}")
    lines += [
        f"  [{f['severity']}] {f['script_id']} {result.clean(f['title'])} ({f['status']})"
        for f in result.findings
    ]
    return lines
