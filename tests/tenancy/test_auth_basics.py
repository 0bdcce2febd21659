"""Register, login, /me, CSRF: the base every other route relies on."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from cogumi.tenancy.models import LoginSession, User
from tests.factories import PASSWORD, Accounts, unique_email


async def test_register_creates_owner_and_signs_in(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["email"] == email
    assert body["current_org"]["role"] == "OWNER"
    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("cogumi_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    me = await client.get("/api/me")
    assert me.status_code == 200
    assert me.json()["current_org"]["id"] == body["current_org"]["id"]


async def test_session_token_and_password_are_stored_hashed(
    client: httpx.AsyncClient, sessionmaker
) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    token = response.cookies["cogumi_session"]
    async with sessionmaker() as session:
        user = await session.scalar(select(User).where(User.email == email))
        assert user is not None and user.password_hash and PASSWORD not in user.password_hash
        assert user.password_hash.startswith("$argon2id$")
        sessions = (
            await session.scalars(select(LoginSession).where(LoginSession.user_id == user.id))
        ).all()
        assert (
            len(sessions) == 1
            and sessions[0].token_hash != token
            and token not in sessions[0].token_hash
        )


async def test_duplicate_email_is_409_and_writes_nothing(
    client: httpx.AsyncClient, sessionmaker
) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    first = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert first.status_code == 201
    client.cookies.clear()
    again = await client.post(
        "/api/auth/register", json={"email": email.upper(), "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(User.email == email)
        )
    assert count == 1


async def test_login_wrong_password_is_401(client: httpx.AsyncClient, accounts: Accounts) -> None:
    owner = await accounts.signup()
    response = await client.post(
        "/api/auth/login", json={"email": owner.email, "password": "wrong password!"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "unauthenticated", "message": "wrong email or password"}


async def test_cookie_write_without_csrf_header_is_403(accounts: Accounts) -> None:
    owner = await accounts.signup()
    del owner.client.headers["X-CSRF-Token"]
    # Any cookie-authenticated write; logout is the simplest.
    response = await owner.client.post(
        "/api/auth/register", json={"email": unique_email(), "password": PASSWORD}
    )
    assert response.status_code == 403
    assert response.json()["reason"] == "csrf"


async def test_me_anonymous_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
