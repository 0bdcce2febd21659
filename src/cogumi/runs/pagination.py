"""Opaque keyset cursors on (created_at, id), newest first.

Keyset rather than offsets, so a page boundary does not shift while new
rows are written. The cursor is base64 of the last row's timestamp and id.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from cogumi.errors import InvalidInput


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{row_id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _bad_cursor() -> InvalidInput:
    error = InvalidInput("cursor", "not a cursor this API returned")
    error.fields["fields"][0]["loc"] = ["query", "cursor"]
    return error


def decode_cursor(value: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor points after; 422 naming ``cursor`` otherwise."""
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
