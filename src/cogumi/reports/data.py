"""What a report is rendered from: JSON-shaped facts about one run, gathered once.

Renderers (Markdown, HTML) are pure functions of this object, so the same
facts always give the same report and tests can render without a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cogumi.reports.compliance import Compliance


@dataclass(frozen=True)
class ReportData:
    run: Mapping[str, Any]  # RunOut as JSON
    project: Mapping[str, Any]  # {id, name, environment}
    results: Sequence[Mapping[str, Any]]  # ScriptResultOut as JSON
    findings: Sequence[Mapping[str, Any]]  # FindingOut as JSON + "change" + "regression"
    events: Mapping[str, Mapping[str, Any]]  # the events findings cite, by id (EventOut JSON)
    event_count: int
    compliance: Compliance
    bundle_root: str
    version: int
    generated_at: str
    comparison: Mapping[str, Any] | None = None  # compare summary against the previous run
    techniques: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # id -> facts
