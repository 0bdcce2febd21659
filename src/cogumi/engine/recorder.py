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

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.detect.redact import redact_text
from cogumi.events.models import Event
from cogumi.events.service import bound_payload, integrity_hash, reserve_seq
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

    async def message(
        self,
        session: AsyncSession,
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
        """One ``agent.message`` (adversary or target), redacted, with its matches."""
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
        return await self._write(
            session, type_="agent.message", channel="system", actor=actor, payload=payload,
            matches=matches, error=error, ts=ts,
        )  # fmt: skip

    async def marker(self, session: AsyncSession, **payload: Any) -> dict[str, Any]:
        """A ``marker`` event (script start/end, finding, quota stop)."""
        return await self._write(
            session, type_="marker", channel="system", actor="system", payload=payload, matches=[]
        )

    async def _write(
        self,
        session: AsyncSession,
        *,
        type_: str,
        channel: str,
        actor: str,
        payload: dict[str, Any],
        matches: list[dict[str, Any]],
        error: str | None = None,
        ts: datetime | None = None,
    ) -> dict[str, Any]:
        seq = await reserve_seq(session, run_id=self.run.id, count=1)
        payload = bound_payload(payload)
        now = utcnow()
        row = {
            "id": uuid.uuid4(),
            "org_id": self.run.org_id,
            "project_id": self.run.project_id,
            "run_id": self.run.id,
            "seq": seq,
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
        await session.execute(insert(Event), [row])
        event = {**row, "id": str(row["id"])}
        self.events.append(event)
        return event
