"""Reading the audit log: newest first, keyset-paginated on (created_at, id).

Keyset pagination rather than offsets, so a page boundary does not shift
while new rows are being written. The cursor is opaque to clients: base64 of
the last row's timestamp and id.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.db.scope import in_org
from cogumi.errors import InvalidInput
from cogumi.tenancy.models import AuditLog

Cursor = tuple[datetime, uuid.UUID]


def encode_cursor(row: AuditLog) -> str:
    raw = f"{row.created_at.astimezone(UTC).isoformat()}|{row.id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _bad_cursor() -> InvalidInput:
    error = InvalidInput("cursor", "not a cursor this API returned")
    error.fields["fields"][0]["loc"] = ["query", "cursor"]
    return error


def decode_cursor(value: str) -> Cursor:
    """The (created_at, id) a cursor points after; 422 naming ``cursor`` if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stamp, _, hex_id = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        row_id = uuid.UUID(hex=hex_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc
    if created_at.tzinfo is None:
        raise _bad_cursor()
    return created_at, row_id


async def audit_page(
    session: AsyncSession, *, org_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[AuditLog], str | None]:
    """One page of the org's audit log and the cursor of the next one (None at the end)."""
    query = in_org(AuditLog, org_id)
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(
            or_(
                AuditLog.created_at < created_at,
                and_(AuditLog.created_at == created_at, AuditLog.id < row_id),
            )
        )
    query = query.order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None
