"""Evidence windows: the network events of one turn, and knowing when they are all in.

A turn's window is the sidecar events stamped between its adversary message
and the agent's reply, with :data:`CLOCK_SKEW` of slack on both ends. It is
read once the project's sidecar watermark (the earliest of its live
sidecars') has passed the reply, so nothing still in flight is missed and no
turn waits longer than the sidecar's next batch; with no live sidecar the
window is read at once and marked incomplete. Each event is evidence of one
turn only (:meth:`Windows.claim`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.engine.observation import NetEvent
from cogumi.engine.recorder import Recorder, upgrade_canaries
from cogumi.events.models import Event
from cogumi.events.service import watermark_for_project

EVIDENCE_WAIT_SEC = 5.0
"""Longest wait for the sidecar watermark to pass a reply (an in-flight slow call holds it)."""
CLOCK_SKEW = timedelta(milliseconds=250)
"""Slack on both ends of a window for clock differences between sidecar and server."""
WATERMARK_POLL_SEC = 0.05

Window = tuple[tuple[NetEvent, ...], bool]
"""A turn's events and whether the watermark proved them complete."""


@dataclass
class Windows:
    """The evidence windows of one run's turns."""

    sessionmaker: async_sessionmaker[AsyncSession]
    run_id: uuid.UUID
    project_id: uuid.UUID
    recorder: Recorder
    claimed: set[str] = field(default_factory=set)
    """Network events already in some turn's window."""

    async def settled(
        self, session: AsyncSession, sent_at: datetime, replied_at: datetime
    ) -> Window | None:
        """The turn's window if it can be read now, in the turn's own transaction.

        A project no sidecar ever shipped to has no network events: empty and
        incomplete, without reading the events table. None when a live
        sidecar's watermark has not yet passed the reply (:meth:`wait` waits).
        """
        if not self.recorder.sidecar_seen:  # learnt by the turn's own seq reservation
            return (), False
        mark = await watermark_for_project(session, project_id=self.project_id)
        complete = mark is not None and mark >= replied_at
        if complete or mark is None:
            return await self._events(session, sent_at, replied_at), complete
        return None

    async def wait(self, sent_at: datetime, replied_at: datetime) -> Window:
        """Network events of the turn, once the sidecar watermark says they all arrived.

        With no live sidecar the window is read at once and marked incomplete;
        past :data:`EVIDENCE_WAIT_SEC` it is read as it is, also incomplete.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EVIDENCE_WAIT_SEC
        while True:
            async with self.sessionmaker() as session:
                mark = await watermark_for_project(session, project_id=self.project_id)
                complete = mark is not None and mark >= replied_at
                if complete or mark is None or loop.time() >= deadline:
                    return await self._events(session, sent_at, replied_at), complete
            await asyncio.sleep(WATERMARK_POLL_SEC)

    def claim(self, events: tuple[NetEvent, ...]) -> tuple[NetEvent, ...]:
        """The window's events no earlier turn already had.

        The slack reaches back into the previous turn when the agent answers
        quickly; a request the agent made during the previous turn is evidence
        of that turn only, never of both.
        """
        fresh = tuple(e for e in events if e.id not in self.claimed)
        self.claimed.update(e.id for e in fresh)
        return fresh

    async def _events(
        self, session: AsyncSession, sent_at: datetime, replied_at: datetime
    ) -> tuple[NetEvent, ...]:
        rows = (
            await session.scalars(
                select(Event)
                .where(
                    Event.run_id == self.run_id,
                    Event.channel.in_(("http", "policy")),
                    Event.ts >= sent_at - CLOCK_SKEW,
                    Event.ts <= replied_at + CLOCK_SKEW,
                )
                .order_by(Event.seq)
            )
        ).all()
        return tuple(self._net_event(row) for row in rows)

    def _net_event(self, row: Event) -> NetEvent:
        payload = row.payload_redacted or {}
        return NetEvent(
            id=str(row.id), ts=row.ts, type=row.type, classification=row.classification,
            host=row.dest_host, path=row.dest_path, method=row.http_method,
            status_code=row.status_code, bytes_out=row.bytes_out,
            sensitive_path=row.sensitive_path,
            matches=tuple(upgrade_canaries(row.matches or [], self.recorder.canary_hashes)),
            summary=str(payload.get("summary", "")),
            body_preview=str(payload.get("body_redacted_preview", "")),
        )  # fmt: skip
