"""Organisation settings: members and roles, invitations, API keys, audit log, new org."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cogumi.tenancy import service_audit, service_invitations, service_keys, service_members
from cogumi.tenancy.deps import DbSession
from cogumi.tenancy.models import Role
from cogumi.web.render import PageViewer, or_page_error, render

router = APIRouter()

AUDIT_PAGE = 50


@router.get("/org", response_class=HTMLResponse)
async def org_page(
    request: Request, viewer: PageViewer, session: DbSession, cursor: str | None = None
) -> HTMLResponse:
    """Each section shows only to the roles that may read it (the API enforces the same)."""
    invitations = (
        await service_invitations.pending_invitations(session, org_id=viewer.org_id)
        if viewer.can("members.manage")
        else []
    )
    keys = (
        await service_keys.list_api_keys(session, org_id=viewer.org_id)
        if viewer.can("tokens.manage")
        else []
    )
    audit, next_cursor = (
        await or_page_error(
            service_audit.audit_page(session, org_id=viewer.org_id, limit=AUDIT_PAGE, cursor=cursor)
        )
        if viewer.can("audit.read")
        else ([], None)
    )
    return render(
        request,
        "org.html",
        viewer=viewer,
        members=await service_members.list_members(session, org_id=viewer.org_id),
        invitations=invitations,
        keys=keys,
        audit=audit,
        next_cursor=next_cursor,
        roles=[r.value for r in Role],
    )
