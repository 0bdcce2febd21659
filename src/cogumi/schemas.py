"""Shared pydantic building blocks for API input and output."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationInfo, field_validator

UNSTORABLE = (
    "must not contain NUL characters or unpaired UTF-16 surrogates (text must be valid Unicode)"
)


def unstorable_text(value: object, *, allow_nul: bool = False) -> bool:
    """Whether ``value`` holds a string no database column can store faithfully.

    PostgreSQL refuses NUL in text, and an unpaired surrogate (legal in a JSON
    escape, ``"\\ud800"``) cannot be encoded as UTF-8 at all. Nested lists and
    objects are searched, keys included.
    """
    if isinstance(value, str):
        if not allow_nul and "\x00" in value:
            return True
        return not value.isascii() and not _encodes(value)
    if isinstance(value, dict):
        return any(
            unstorable_text(k, allow_nul=allow_nul) or unstorable_text(v, allow_nul=allow_nul)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple | set | frozenset):
        return any(unstorable_text(v, allow_nul=allow_nul) for v in value)
    return False


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BulkInput(BaseModel):
    """Base of high-volume request items (ingested events): unknown fields are an
    error, strings are stripped; the service that stores them checks their text
    in one pass (a validator per field would cost more than the rest of ingest)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Input(BulkInput):
    """Base of every request body: as :class:`BulkInput`, and text must be storable
    (no NUL, no unpaired surrogates), else a 422 naming the field."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel):  # validated on its own
            return value
        if unstorable_text(value):
            raise ValueError(UNSTORABLE)
        return value


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


Name = Annotated[str, StringConstraints(min_length=1, max_length=120)]
