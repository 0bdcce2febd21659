"""Errors the product raises on purpose, and the one JSON shape they take.

Every error response body is ``{"error": <code>, "message": <text>, ...fields}``.
Validation errors add ``fields: [{"field", "loc", "message", "type"}]``; quota
errors add ``quota, limit, used, retry_after``. A test pins this shape.

    CogumiError                      500 internal_error
    ├── BadRequest                   400 bad_request
    ├── Unauthenticated              401 unauthenticated
    ├── Forbidden                    403 forbidden
    ├── NotFound                     404 not_found
    ├── Conflict                     409 conflict
    ├── Gone                         410 gone
    ├── PayloadTooLarge              413 payload_too_large
    ├── InvalidInput                 422 validation_error
    └── TooManyRequests              429 rate_limited

A database or Redis that cannot be reached while serving a request answers
503 ``unavailable`` with ``Retry-After`` (see :func:`install_unavailable_handler`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class CogumiError(Exception):
    """Base of every deliberate error; knows its HTTP status and its code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.fields}


class BadRequest(CogumiError):
    status_code = 400
    code = "bad_request"


class Unauthenticated(CogumiError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(CogumiError):
    status_code = 403
    code = "forbidden"


class NotFound(CogumiError):
    status_code = 404
    code = "not_found"


class Conflict(CogumiError):
    status_code = 409
    code = "conflict"


class Gone(CogumiError):
    status_code = 410
    code = "gone"


class PayloadTooLarge(CogumiError):
    status_code = 413
    code = "payload_too_large"


class InvalidInput(CogumiError):
    """422 for a value that passed parsing but breaks a rule (names the field)."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str, type_: str = "value_error") -> None:
        super().__init__(
            f"{field}: {message}",
            fields=[{"field": field, "loc": ["body", field], "message": message, "type": type_}],
        )


class TooManyRequests(CogumiError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **fields: Any) -> None:
        super().__init__(message, retry_after=retry_after, **fields)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ErrorBody(BaseModel):
    """The JSON body of every error answer (documented in the OpenAPI schema)."""

    model_config = ConfigDict(extra="allow", title="Error")

    error: str = Field(description="Machine-readable code, e.g. `not_found`, `rate_limited`.")
    message: str = Field(description="What went wrong, for a person.")


class FieldErrorBody(BaseModel):
    field: str = Field(description="Dotted name of the offending field, e.g. `redteam.intensity`.")
    loc: list[str | int] = Field(description="Where it sits: `body`, `query`, `path` or `header`, then the path.")  # fmt: skip
    message: str
    type: str = Field(description="Pydantic's error type, e.g. `missing`, `string_too_long`.")


class ValidationErrorBody(ErrorBody):
    """422: what failed validation, field by field (the submitted value is never echoed)."""

    model_config = ConfigDict(extra="allow", title="ValidationErrorBody")

    fields: list[FieldErrorBody]


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


def validation_fields(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn pydantic errors into our field list; never echo the submitted value."""
    out = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        # A JSON syntax error's location is a character offset, not a field.
        field = "body" if err.get("type") == "json_invalid" else _field_name(loc)
        out.append(
            {
                "field": field,
                "loc": list(loc),
                "message": str(err.get("msg", "invalid value")),
                "type": str(err.get("type", "value_error")),
            }
        )
    return out


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers to, for a 405's ``Allow`` header.

    Starlette names only the methods of the first route whose path matched, so
    ``DELETE /api/projects`` would say ``Allow: POST`` although GET works too:
    ask the router about each method instead."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error (ours, FastAPI's, Starlette's, unexpected) to the JSON shape."""

    @app.exception_handler(CogumiError)
    async def _cogumi(_: Request, exc: CogumiError) -> JSONResponse:
        return error_response(exc.status_code, exc.body(), exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = validation_fields(list(exc.errors()))
        first = fields[0] if fields else {"field": "body", "message": "invalid"}
        return error_response(
            422,
            {
                "error": "validation_error",
                "message": f"{first['field']}: {first['message']}",
                "fields": fields,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return error_response(exc.status_code, {"error": code, "message": message}, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, {"error": "internal_error", "message": "internal error"})


def install_integrity_handler(app: FastAPI) -> None:
    """A unique-constraint race (two requests creating the same thing) is a 409, not a 500."""
    from sqlalchemy.exc import IntegrityError

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error mapped to 409: %s", type(exc.orig).__name__)
        return error_response(
            409, {"error": "conflict", "message": "conflicts with an existing record"}
        )


UNAVAILABLE_RETRY_AFTER_SEC = 5


def install_unavailable_handler(app: FastAPI) -> None:
    """A lost database or Redis connection is a 503 the client may retry, not a 500.

    Connections are re-established on their own (pool pre-ping, Redis reconnects),
    so the same request succeeds again once the service is back.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: a backing service is unavailable: %s",
                    request.method, request.url.path, type(exc).__name__)  # fmt: skip
        body = {"error": "unavailable", "message": "a service this request needs is "
                "unavailable; retry shortly"}  # fmt: skip
        return error_response(503, body, {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SEC)})

    for kind in (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError,
                 ConnectionError):  # fmt: skip
        app.add_exception_handler(kind, _unavailable)
