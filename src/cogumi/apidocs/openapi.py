"""The error answers in the OpenAPI document, as the API really sends them.

FastAPI documents a 422 body of its own (``{"detail": [...]}``) and nothing
else; the API answers every error with ``{"error", "message", ...}``
(cogumi/errors.py). This rewrites the document so clients and fuzzers can
rely on it: every ``/api`` operation declares ``4XX`` with the error body,
422 with the field-by-field validation body, and 429 with the
``Retry-After`` header it always carries. Operations keep any specific
error statuses they declared (their descriptions stay), now with the body.
"""

from __future__ import annotations

from typing import Any

from cogumi.errors import ErrorBody, ValidationErrorBody

REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/schemas/Error"}
VALIDATION_ERROR = {"$ref": "#/components/schemas/ValidationErrorBody"}
# FastAPI's own 422 shapes, which the API never sends.
FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (ErrorBody, ValidationErrorBody):
        generated = model.model_json_schema(ref_template=REF)
        schemas.update(generated.pop("$defs", {}))
        schemas[str(generated["title"])] = generated
    return schemas


def _document_operation(responses: dict[str, Any]) -> None:
    for code, response in responses.items():
        if code == "422":
            response["content"] = _json(VALIDATION_ERROR)
            response["description"] = "The request failed validation; `fields` says where."
        elif code.startswith("4"):
            response["content"] = _json(ERROR)
        if code == "429":
            response["headers"] = RETRY_AFTER
    responses.setdefault(
        "4XX",
        {
            "description": "The request was refused; `error` says why (e.g. `unauthenticated`, "
            "`forbidden`, `not_found`, `conflict`, `payload_too_large`, `rate_limited`).",
            "content": _json(ERROR),
        },
    )


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Give every ``/api`` operation its real error answers (see the module docstring)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_SCHEMAS:
        components.pop(name, None)
    components.update(_error_schemas())
    for path, item in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            if method in METHODS:
                _document_operation(operation.setdefault("responses", {}))
    return schema
