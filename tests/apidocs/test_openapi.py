"""The OpenAPI document declares the error answers the API really sends."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest

from tests.factories import Accounts

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def schema(client: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/api/openapi.json")).json()
    return document


def validator(schema: dict[str, Any], ref: dict[str, str]) -> jsonschema.Draft202012Validator:
    """A validator for ``ref`` that resolves ``#/components/...`` against the document."""
    wrapped = {**ref, "components": schema["components"]}
    return jsonschema.Draft202012Validator(wrapped)


def error_ref(schema: dict[str, Any], path: str, method: str, status: str) -> dict[str, str]:
    ref: dict[str, str] = schema["paths"][path][method]["responses"][status]["content"][
        "application/json"
    ]["schema"]
    return ref


async def test_every_operation_documents_its_errors(schema: dict[str, Any]) -> None:
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS and path.startswith("/api/")
    ]
    assert len(operations) > 70
    for path, method, operation in operations:
        responses = operation["responses"]
        assert error_ref(schema, path, method, "4XX") == {"$ref": "#/components/schemas/Error"}
        if "422" in responses:
            assert error_ref(schema, path, method, "422") == {
                "$ref": "#/components/schemas/ValidationErrorBody"
            }
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["required"] is True
    # FastAPI's own 422 body ({"detail": [...]}) is never sent, so it is not documented.
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_real_error_bodies_match_the_documented_ones(
    schema: dict[str, Any], accounts: Accounts, client: httpx.AsyncClient
) -> None:
    owner = await accounts.signup()
    invalid = await owner.client.post("/api/projects", json={"name": ""})
    assert invalid.status_code == 422
    ref = error_ref(schema, "/api/projects", "post", "422")
    validator(schema, ref).validate(invalid.json())
    missing = await owner.client.get("/api/projects/6f1c8f0e-0d5b-4c63-9d7e-0f4f3b1d2a11")
    assert missing.status_code == 404
    validator(schema, error_ref(schema, "/api/projects/{project_id}", "get", "4XX")).validate(
        missing.json()
    )
    # The documented 422 body is strict enough to catch FastAPI's own shape.
    with pytest.raises(jsonschema.ValidationError):
        validator(schema, ref).validate({"detail": [{"loc": ["body"], "msg": "x", "type": "y"}]})
    anonymous = await client.get("/api/projects")
    assert anonymous.status_code == 401
    validator(schema, error_ref(schema, "/api/projects", "get", "4XX")).validate(anonymous.json())


async def test_no_two_paths_differ_only_in_a_parameter_name(schema: dict[str, Any]) -> None:
    """OpenAPI treats /a/{x} and /a/{y} as one path: two such templates make the
    document invalid and a 405's Allow header disagree with it."""
    shapes: dict[str, list[str]] = {}
    for path in schema["paths"]:
        shapes.setdefault(re.sub(r"\{[^}]+\}", "{}", path), []).append(path)
    assert [paths for paths in shapes.values() if len(paths) > 1] == []
