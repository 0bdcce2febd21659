"""Prompt variants kept per project: stored when first rendered, reused least-recently-used.

A project's campaigns rotate through its stored phrasings (built-in renders
and the customer's own), so repeated runs probe with different wording while
staying reproducible. The store is bounded per project (LRU pruning).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.engine.library.styles import Variant
from cogumi.engine.models import PromptVariant

MAX_VARIANTS_PER_PROJECT = 500
CUSTOMER_STYLE = "customer"


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
    await store(
        session, org_id=org_id, project_id=project_id, script_id=script_id, step_id=step_id,
        variants=rendered,
    )  # fmt: skip
    allowed = {*styles, CUSTOMER_STYLE} if styles else None
    query = select(PromptVariant).where(
        PromptVariant.project_id == project_id,
        PromptVariant.script_id == script_id,
        PromptVariant.step_id == step_id,
    )
    if allowed is not None:
        query = query.where(PromptVariant.style.in_(allowed))
    rows = (await session.scalars(query)).all()
    rows = sorted(
        rows,
        key=lambda r: (
            r.last_used_at is not None,
            r.last_used_at or r.created_at,
            r.use_count,
            r.text_hash,
        ),
    )
    picked = rows[: len(rendered)]
    now = utcnow()
    for row in picked:
        row.last_used_at = now
        row.use_count += 1
    await session.flush()
    return [Variant(row.style, row.text) for row in picked]


async def prune(
    session: AsyncSession, *, project_id: uuid.UUID, keep: int = MAX_VARIANTS_PER_PROJECT
) -> int:
    """Drop the least recently used variants beyond ``keep``; returns how many went."""
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
