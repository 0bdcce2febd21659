"""What a webhook receives: the event document, or a Slack message made from it.

The document is stored with the delivery when the event happens; the links
to the product are added when it is sent (they depend on the deployment's
public URL, which the sending process knows). Only what the product already
shows its users goes out: titles, severities, scores and links, never
evidence payloads.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from cogumi.db.base import utcnow
from cogumi.findings.models import Finding
from cogumi.projects.models import Project
from cogumi.runs.models import Run
from cogumi.webhooks.models import EventType, PayloadFormat

SEVERITY_ICON = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_yellow_circle:",
    "info": ":information_source:",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_data(run: Run, project: Project) -> dict[str, Any]:
    return {
        "run": {
            "id": str(run.id),
            "status": run.status.value,
            "risk_score": run.risk_score,
            "started_at": _iso(run.started_at),
            "ended_at": _iso(run.ended_at),
            "failure_reason": run.failure_reason,
        },
        "project": {"id": str(project.id), "name": project.name},
    }


def finding_data(finding: Finding, project: Project) -> dict[str, Any]:
    return {
        "finding": {
            "id": str(finding.id),
            "run_id": str(finding.run_id),
            "title": finding.title,
            "severity": finding.severity.value,
            "status": finding.status.value,
            "score": finding.score,
            "confidence": finding.confidence,
            "script_id": finding.script_id,
            "technique_id": finding.technique_id,
            "category": finding.category,
            "fingerprint": finding.fingerprint,
        },
        "project": {"id": str(project.id), "name": project.name},
    }


def document(
    *, event_id: uuid.UUID, event_type: EventType, org_id: uuid.UUID, data: dict[str, Any]
) -> dict[str, Any]:
    """The stored event (``created_at`` is when the change happened)."""
    return {
        "id": str(event_id),
        "type": event_type.value,
        "created_at": utcnow().isoformat(),
        "org_id": str(org_id),
        "data": data,
    }


def _run_id(doc: dict[str, Any]) -> str:
    data = doc["data"]
    return str(data["finding"]["run_id"] if "finding" in data else data["run"]["id"])


def with_links(doc: dict[str, Any], *, base_url: str) -> dict[str, Any]:
    """The document plus ``data.url``: the run page in this deployment."""
    data = {**doc["data"], "url": f"{base_url.rstrip('/')}/runs/{_run_id(doc)}"}
    return {**doc, "data": data}


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters; agent-influenced titles stay plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(doc: dict[str, Any]) -> str:
    data = doc["data"]
    project = _slack_escape(str(data["project"]["name"]))
    link = f"<{data['url']}|open the run>"
    if "finding" in data:
        finding = data["finding"]
        icon = SEVERITY_ICON.get(finding["severity"], "")
        title = _slack_escape(str(finding["title"]))
        return (
            f"{icon} *{finding['severity'].upper()}* finding in *{project}*: {title} "
            f"({finding['status']}, score {finding['score']}) — {link}"
        )
    run = data["run"]
    if doc["type"] == EventType.run_completed.value:
        return f":white_check_mark: Run on *{project}* completed, risk score {run['risk_score']} — {link}"
    reason = _slack_escape(str(run.get("failure_reason") or run["status"]))
    return f":x: Run on *{project}* ended {run['status']}: {reason} — {link}"


def render_body(doc: dict[str, Any], *, fmt: PayloadFormat, base_url: str) -> bytes:
    """The exact bytes sent (and signed)."""
    linked = with_links(doc, base_url=base_url)
    body: dict[str, Any] = {"text": slack_text(linked)} if fmt == PayloadFormat.slack else linked
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
