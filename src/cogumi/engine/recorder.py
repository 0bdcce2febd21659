"""Events the engine itself writes into a run: agent messages and markers.

They share the run's ``seq`` with sidecar events (same reservation), so the
story, the timeline and an evidence bundle see one ordered stream. Text is
redacted before it is stored; matches whose hash is one of the project's
canary hashes become ``CANARY`` matches with confidence 1.0.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.detect.redact import redact_text
from cogumi.events.service import (
    bound_payload,
    insert_events,
    integrity_hash,
    reserve_seq_and_probe,
)
from cogumi.runs.models import Run

PREVIEW_LIMIT = 16 * 1024


def upgrade_canaries(
    matches: Iterable[dict[str, Any]], canary_hashes: Collection[str]
) -> list[dict[str, Any]]:
    """Matches with canary hashes re-labelled ``CANARY`` (kept: what it imitated)."""
    out = []
    for match in matches:
        if match.get("hash") in canary_hashes and match.get("kind") != "CANARY":
            match = {**match, "kind": "CANARY", "confidence": 1.0, "imitates": match.get("kind")}
        out.append(match)
    return out


@dataclass
class Recorder:
    """Writes a run's engine events and remembers them (as dicts) for the story."""

    run: Run
    canary_hashes: frozenset[str] = frozenset()
    events: list[dict[str, Any]] = field(default_factory=list)
    sidecar_seen: bool = True
    """Whether a sidecar had ever shipped to the project at the last write (until
    the first write: assume one has)."""

    def message_row(
        self,
        *,
        actor: str,
        text: str,
        script_id: str,
        step_id: str,
        attack_style: str | None,
        session_id: str,
        error: str | None = None,
        ts: datetime | None = None,
    ) -> dict[str, Any]:
        """One ``agent.message`` row (adversary or target), redacted, with its matches.

        Built without a ``seq``: :meth:`write` numbers a whole turn's rows with
        one reservation, so a turn costs one run-row update and one insert.
        """
        redacted, found = redact_text(text, limit=PREVIEW_LIMIT)
        matches = upgrade_canaries((m.to_dict() for m in found), self.canary_hashes)
        who = "Adversary" if actor == "adversary" else "Agent"
        payload = {
            "summary": f"{who}: {redacted[:160]}",
            "text_redacted": redacted,
            "script_id": script_id,
            "script_step_id": step_id,
            "attack_style": attack_style,
            "session_id": session_id,
        }
        return self._row(
            type_="agent.message", channel="system", actor=actor, payload=payload,
            matches=matches, error=error, ts=ts,
        )  # fmt: skip

    def marker_row(self, **payload: Any) -> dict[str, Any]:
        """A ``marker`` row (script start/end, finding, quota stop)."""
        return self._row(
            type_="marker", channel="system", actor="system", payload=payload, matches=[]
        )

    async def message(self, session: AsyncSession, **fields: Any) -> dict[str, Any]:
        """Write one ``agent.message`` (see :meth:`message_row`)."""
        (event,) = await self.write(session, [self.message_row(**fields)])
        return event

    async def marker(self, session: AsyncSession, **payload: Any) -> dict[str, Any]:
        """Write one ``marker`` event."""
        (event,) = await self.write(session, [self.marker_row(**payload)])
        return event

    async def write(
        self, session: AsyncSession, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Number ``rows`` with the run's next seqs (one reservation) and insert them.

        The reservation also refreshes :attr:`sidecar_seen`.
        """
        first, self.sidecar_seen = await reserve_seq_and_probe(
            session, run_id=self.run.id, count=len(rows)
        )
        for offset, row in enumerate(rows):
            row["seq"] = first + offset
        await insert_events(session, rows)
        events = [{**row, "id": str(row["id"])} for row in rows]
        self.events.extend(events)
        return events

    def _row(
        self,
        *,
        type_: str,
        channel: str,
        actor: str,
        payload: dict[str, Any],
        matches: list[dict[str, Any]],
        error: str | None = None,
        ts: datetime | None = None,
    ) -> dict[str, Any]:
        payload = bound_payload(payload)
        now = utcnow()
        return {
            "id": uuid.uuid4(),
            "org_id": self.run.org_id,
            "project_id": self.run.project_id,
            "run_id": self.run.id,
            "seq": None,
            "ts": ts or now,
            "received_at": now,
            "channel": channel,
            "type": type_,
            "actor": actor,
            "payload_redacted": payload,
            "matches": matches,
            "integrity_hash": integrity_hash(payload),
            "error": error,
        }
