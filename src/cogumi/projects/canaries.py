"""Project canaries: mint fake secrets for the agent's sandbox, recognise them later.

The raw values are returned once, at minting, with a copy-paste snippet; the
database keeps kind, sha256 and a preview. Detection needs no raw value:
every secret match carries the sha256 of what it matched, so a match whose
hash is one of the project's canary hashes is a canary sighting.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.base import utcnow
from cogumi.db.scope import get_in_org, in_org
from cogumi.detect.canaries import mint_canaries, public_prefix
from cogumi.detect.heuristics import make_preview
from cogumi.detect.match import sha256_hex
from cogumi.errors import Conflict
from cogumi.projects.models import Canary, Project
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import Member

MAX_ACTIVE_CANARIES = 40
ENV_NAMES = {
    "OPENAI_KEY": "OPENAI_API_KEY",
    "AWS_ACCESS_KEY": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_KEY": "AWS_SECRET_ACCESS_KEY",
    "JWT": "SERVICE_TOKEN",
}


@dataclass(frozen=True)
class Minted:
    rows: list[Canary]
    values: dict[str, str]  # kind -> raw value, for the one-time response only

    def snippet(self) -> dict[str, str]:
        """Ways to plant the canaries: an env file and a JSON blob for tool data."""
        env = "\n".join(f"{ENV_NAMES.get(k, k)}={v}" for k, v in self.values.items())
        data = json.dumps(
            {ENV_NAMES.get(k, k).lower(): v for k, v in self.values.items()}, indent=2
        )
        return {"env": env + "\n", "json": data + "\n"}


async def mint(
    session: AsyncSession, *, member: Member, project: Project, label: str = ""
) -> Minted:
    """Mint one canary of each kind for ``project``; audit-logged (hashes, never values)."""
    active = await active_canaries(session, project_id=project.id, org_id=member.org_id)
    values = mint_canaries()
    if len(active) + len(values) > MAX_ACTIVE_CANARIES:
        raise Conflict(
            f"a project keeps at most {MAX_ACTIVE_CANARIES} active canaries; revoke some"
        )
    rows = [
        Canary(
            id=uuid.uuid4(),
            org_id=member.org_id,
            project_id=project.id,
            kind=kind,
            hash=sha256_hex(value),
            preview=make_preview(value, public_prefix(value)),
            label=label,
            created_by=member.user_id,
        )
        for kind, value in values.items()
    ]
    session.add_all(rows)
    await session.flush()
    record_by(
        session, member.principal, org_id=member.org_id, action=Action.PROJECT_UPDATED,
        target_type="project", target_id=project.id,
        detail={"canaries_minted": [r.preview for r in rows]},
    )  # fmt: skip
    return Minted(rows=rows, values=values)


async def active_canaries(
    session: AsyncSession, *, project_id: uuid.UUID, org_id: uuid.UUID
) -> Sequence[Canary]:
    query = in_org(Canary, org_id).where(
        Canary.project_id == project_id, Canary.revoked_at.is_(None)
    )
    return (await session.scalars(query.order_by(Canary.created_at, Canary.kind))).all()


async def revoke(
    session: AsyncSession, *, member: Member, project: Project, canary_id: uuid.UUID
) -> Canary:
    canary = await get_in_org(session, Canary, canary_id, member.org_id, what="canary")
    if canary.project_id != project.id:
        from cogumi.errors import NotFound

        raise NotFound("canary not found")
    if canary.revoked_at is None:
        canary.revoked_at = utcnow()
    return canary


async def canary_hashes(session: AsyncSession, *, project_id: uuid.UUID) -> frozenset[str]:
    """Hashes of every canary ever minted for the project (revoked ones still prove a leak)."""
    rows = await session.scalars(select(Canary.hash).where(Canary.project_id == project_id))
    return frozenset(rows.all())
