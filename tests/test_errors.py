"""The one JSON error shape, for every way a request can be wrong."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from cogumi.tenancy.models import User
from tests.conftest import make_settings
from tests.factories import PASSWORD, Accounts, unique_email


def assert_error_shape(body: dict[str, object], code: str) -> None:
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


async def test_malformed_json_is_422_naming_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        content=b'{"email": "a@b.com",',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body, "validation_error")
    assert body["fields"][0]["type"] == "json_invalid"
    assert body["fields"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": 5, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "surprise": 1}, "surprise"),
        (
            {"email": "a@example.com", "password": PASSWORD, "display_name": "x" * 121},
            "display_name",
        ),
        ({"email": "a@example.com"}, "password"),
    ],
)
async def test_bad_fields_name_the_field(
    client: httpx.AsyncClient, payload: dict[str, object], field: str
) -> None:
    response = await client.post("/api/auth/register", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body, "validation_error")
    assert [f["field"] for f in body["fields"]] == [field]
    assert set(body["fields"][0]) == {"field", "loc", "message", "type"}


async def test_failed_request_writes_nothing(client: httpx.AsyncClient, sessionmaker) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    response = await client.post("/api/auth/register", json={"email": email, "password": "short"})
    assert response.status_code == 422
    async with sessionmaker() as session:
        assert (
            await session.scalar(select(func.count()).select_from(User).where(User.email == email))
            == 0
        )


async def test_unknown_route_and_method_use_the_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/no-such-thing")
    assert missing.status_code == 404
    assert_error_shape(missing.json(), "not_found")
    wrong_method = await client.delete("/api/auth/login")
    assert wrong_method.status_code == 405
    assert_error_shape(wrong_method.json(), "method_not_allowed")


async def test_405_allow_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    # GET and POST /api/projects are two routes: Allow must name both, not the last one tried.
    response = await client.delete("/api/projects")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    one = await client.put("/api/projects/6f1c8f0e-0d5b-4c63-9d7e-0f4f3b1d2a11")
    assert one.status_code == 405
    assert one.headers["allow"] == "GET, PATCH, DELETE"


@pytest.mark.parametrize(
    ("raw_title", "why"),
    [("a\\u0000b", "NUL"), ("a\\ud800b", "unpaired surrogate"), ("\\udc00", "lone low half")],
)
async def test_text_no_column_can_store_is_422(
    accounts: Accounts, raw_title: str, why: str
) -> None:
    """PostgreSQL refuses NUL in text and UTF-8 has no unpaired surrogates: both were 500s."""
    owner = await accounts.signup()
    body = '{"title": "' + raw_title + '", "kind": "adversary", "text": "hello"}'
    response = await owner.client.post(
        "/api/saved-prompts", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, (why, response.text)
    assert_error_shape(response.json(), "validation_error")
    assert [f["field"] for f in response.json()["fields"]] == ["title"]
    nested = await owner.client.post("/api/projects", json={"name": "p", "tool_domains": ["a\x00"]})
    assert nested.status_code == 422
    assert [f["field"] for f in nested.json()["fields"]] == ["tool_domains"]


async def test_astral_characters_are_stored(accounts: Accounts) -> None:
    """A surrogate *pair* is one valid character (an emoji), not an unpaired half."""
    owner = await accounts.signup()
    body = '{"title": "ok \\ud83d\\ude00", "kind": "adversary", "text": "hello"}'
    response = await owner.client.post(
        "/api/saved-prompts", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "ok \U0001f600"


async def test_oversized_body_is_413(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cogumi.app import create_app

    app = create_app(make_settings(database_url, tmp_path, max_request_bytes=2048))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            declared = await c.post(
                "/api/auth/register", json={"email": unique_email(), "password": "x" * 5000}
            )
            assert declared.status_code == 413
            assert_error_shape(declared.json(), "payload_too_large")

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(10):
                    yield b"x" * 1000

            streamed = await c.post(
                "/api/auth/register", content=chunks(), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413
            assert_error_shape(streamed.json(), "payload_too_large")


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["db"] == "ok"


async def test_openapi_lists_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    assert "/api/auth/register" in schema["paths"]
    assert "/api/me" in schema["paths"]
