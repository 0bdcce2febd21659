"""The org's audit log (OWNER and ADMIN), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cogumi.tenancy import service_audit
from cogumi.tenancy.deps import AuditReader, DbSession
from cogumi.tenancy.schemas import AuditItemOut, AuditPageOut

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPageOut)
async def read_audit_log(
    session: DbSession,
    member: AuditReader,
    limit: Annotated[int, Query(ge=1, le=200, description="Rows per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
) -> AuditPageOut:
    """Who did what to which target, and when; page with ``next_cursor``."""
    rows, next_cursor = await service_audit.audit_page(
        session, org_id=member.org_id, limit=limit, cursor=cursor
    )
    return AuditPageOut(
        items=[AuditItemOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )
