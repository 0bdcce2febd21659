"""Custom scripts: an org's own techniques and scripts in the library's data format.

They are validated by the same models as the built-ins (clear 422s naming the
field) and merged into the org's library, so they run exactly like built-ins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.scope import get_in_org, in_org
from cogumi.engine.library.loader import Library, LibraryError, load_builtin, parse_custom
from cogumi.engine.models import CustomLibrary
from cogumi.errors import Conflict, InvalidInput
from cogumi.tenancy.audit import Action, record_by
from cogumi.tenancy.deps import Member


async def libraries_of(session: AsyncSession, *, org_id: uuid.UUID) -> Sequence[CustomLibrary]:
    return (
        await session.scalars(in_org(CustomLibrary, org_id).order_by(CustomLibrary.created_at))
    ).all()


def merge(base: Library, documents: Sequence[dict[str, Any]]) -> Library:
    """The built-in library plus every custom document, each validated against what came before."""
    library = base
    for document in documents:
        custom = parse_custom(document, base=library)
        library = Library(
            techniques={**library.techniques, **{t.id: t for t in custom.techniques}},
            scripts={**library.scripts, **{s.id: s for s in custom.scripts}},
            styles=library.styles,
        )
    return library


async def org_library(session: AsyncSession, *, org_id: uuid.UUID) -> Library:
    return merge(
        load_builtin(), [row.document for row in await libraries_of(session, org_id=org_id)]
    )


async def save(
    session: AsyncSession, *, member: Member, name: str, document: dict[str, Any]
) -> CustomLibrary:
    """Validate ``document`` against the built-ins and the org's other libraries, then keep it."""
    others = await libraries_of(session, org_id=member.org_id)
    if any(row.name == name for row in others):
        raise Conflict(f"a custom library named {name!r} already exists", field="name")
    base = merge(load_builtin(), [row.document for row in others])
    try:
        custom = parse_custom(document, base=base)
    except LibraryError as exc:
        detail = exc.fields["fields"][0]
        where = "document" if exc.field == "body" else f"document.{exc.field}"
        raise InvalidInput(where, detail["message"], detail["type"]) from exc
    row = CustomLibrary(
        org_id=member.org_id, name=name, document=document,
        script_ids=[s.id for s in custom.scripts], created_by=member.user_id,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    record_by(
        session, member.principal, org_id=member.org_id, action=Action.PROJECT_UPDATED,
        target_type="custom_library", target_id=row.id, detail={"name": name, "scripts": row.script_ids},
    )  # fmt: skip
    return row


async def delete_library(session: AsyncSession, *, member: Member, library_id: uuid.UUID) -> None:
    row = await get_in_org(session, CustomLibrary, library_id, member.org_id, what="custom library")
    await session.delete(row)
