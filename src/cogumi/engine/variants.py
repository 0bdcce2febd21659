"""Prompt variants kept per project: stored when first rendered, reused least-recently-used.

A project's campaigns rotate through its stored phrasings (built-in renders
and the customer's own), so repeated runs probe with different wording while
staying reproducible. The store is bounded per project (LRU pruning).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.engine.library.styles import Variant
from cogumi.engine.models import PromptVariant

MAX_VARIANTS_PER_PROJECT = 500
CUSTOMER_STYLE = "customer"
_TABLE = cast(Table, PromptVariant.__table__)


def text_hash(script_id: str, step_id: str, style: str, text: str) -> str:
    return hashlib.sha256(f"{script_id}|{step_id}|{style}|{text}".encode()).hexdigest()


async def store(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    project_id: uuid.UUID,
    script_id: str,
    step_id: str,
    variants: Sequence[Variant],
    source: str = "builtin",
) -> None:
    """Add the variants the project does not have yet."""
    hashes = {text_hash(script_id, step_id, v.style, v.text): v for v in variants}
    known = set(
        (
            await session.scalars(
                select(PromptVariant.text_hash).where(
                    PromptVariant.project_id == project_id, PromptVariant.text_hash.in_(hashes)
                )
            )
        ).all()
    )
    for digest, variant in hashes.items():
        if digest not in known:
            session.add(
                PromptVariant(
                    org_id=org_id,
                    project_id=project_id,
                    script_id=script_id,
                    step_id=step_id,
                    style=variant.style,
                    text=variant.text,
                    text_hash=digest,
                    source=source,
                )
            )
    await session.flush()


async def choose(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    project_id: uuid.UUID,
    script_id: str,
    step_id: str,
    rendered: Sequence[Variant],
    styles: Collection[str],
) -> list[Variant]:
    """Store ``rendered``, then use the least recently used stored variants (same count)."""
    chosen = await choose_for_script(
        session, org_id=org_id, project_id=project_id, script_id=script_id,
        rendered={step_id: rendered}, styles=styles,
    )  # fmt: skip
    return chosen[step_id]


@dataclass(frozen=True, slots=True)
class _Stored:
    id: uuid.UUID
    step_id: str
    style: str
    text: str
    text_hash: str
    created_at: datetime
    last_used_at: datetime | None
    use_count: int

    def lru_key(self) -> tuple[bool, datetime, int, str]:
        """Never used first (oldest stored first), then least recently used."""
        return (
            self.last_used_at is not None,
            self.last_used_at or self.created_at,
            self.use_count,
            self.text_hash,
        )


async def choose_for_script(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    project_id: uuid.UUID,
    script_id: str,
    rendered: Mapping[str, Sequence[Variant]],
    styles: Collection[str],
) -> dict[str, list[Variant]]:
    """:func:`choose` for every step of a script at once, in at most three statements.

    One read of the script's stored variants, one insert of the rendered ones
    the project lacks, one update marking the picked ones used.
    """
    if not rendered:
        return {}
    table = _TABLE
    stored = [
        _Stored(*row)
        for row in (
            await session.execute(
                select(
                    table.c.id, table.c.step_id, table.c.style, table.c.text, table.c.text_hash,
                    table.c.created_at, table.c.last_used_at, table.c.use_count,
                ).where(
                    table.c.project_id == project_id, table.c.script_id == script_id,
                    table.c.step_id.in_(list(rendered)),
                )
            )
        ).all()
    ]  # fmt: skip
    now = utcnow()
    fresh = _fresh(stored, script_id=script_id, rendered=rendered, now=now)
    if fresh:
        await session.execute(
            insert(table),
            [{**_row_of(v), "org_id": org_id, "project_id": project_id, "script_id": script_id,
              "source": "builtin"} for v in fresh],
        )  # fmt: skip
    allowed = {*styles, CUSTOMER_STYLE} if styles else None
    pool = [*stored, *fresh]
    chosen: dict[str, list[Variant]] = {}
    used: list[uuid.UUID] = []
    for step_id, variants in rendered.items():
        mine = [v for v in pool if v.step_id == step_id and (allowed is None or v.style in allowed)]
        picked = sorted(mine, key=_Stored.lru_key)[: len(variants)]
        chosen[step_id] = [Variant(v.style, v.text) for v in picked]
        used.extend(v.id for v in picked)
    if used:
        await session.execute(
            update(table)
            .where(table.c.id.in_(used))
            .values(last_used_at=now, use_count=table.c.use_count + 1)
        )
    return chosen


def _fresh(
    stored: Sequence[_Stored],
    *,
    script_id: str,
    rendered: Mapping[str, Sequence[Variant]],
    now: datetime,
) -> list[_Stored]:
    """The rendered variants not stored yet, stamped in rendering order."""
    known = {v.text_hash for v in stored}
    out: list[_Stored] = []
    for step_id, variants in rendered.items():
        for variant in variants:
            digest = text_hash(script_id, step_id, variant.style, variant.text)
            if digest in known:
                continue
            known.add(digest)
            created = now + timedelta(microseconds=len(out))  # keeps the rendering order
            out.append(
                _Stored(
                    uuid.uuid4(), step_id, variant.style, variant.text, digest, created, None, 0
                )
            )
    return out


def _row_of(variant: _Stored) -> dict[str, Any]:
    return {
        "id": variant.id, "step_id": variant.step_id, "style": variant.style,
        "text": variant.text, "text_hash": variant.text_hash, "created_at": variant.created_at,
        "last_used_at": None, "use_count": 0,
    }  # fmt: skip


async def prune(
    session: AsyncSession, *, project_id: uuid.UUID, keep: int = MAX_VARIANTS_PER_PROJECT
) -> int:
    """Drop the least recently used variants beyond ``keep``; returns how many went."""
    count = await session.scalar(
        select(func.count()).select_from(_TABLE).where(_TABLE.c.project_id == project_id)
    )
    if int(count or 0) <= keep:
        return 0
    rows = (
        await session.execute(
            select(PromptVariant.id, PromptVariant.last_used_at, PromptVariant.created_at).where(
                PromptVariant.project_id == project_id
            )
        )
    ).all()
    if len(rows) <= keep:
        return 0
    ordered = sorted(rows, key=lambda r: r.last_used_at or r.created_at, reverse=True)
    doomed = [r.id for r in ordered[keep:]]
    await session.execute(delete(PromptVariant).where(PromptVariant.id.in_(doomed)))
    return len(doomed)
