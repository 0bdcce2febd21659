"""Google-style sign-in, driven end to end against a local OIDC provider.

The browser is played by hand: the app's ``/login`` redirect is followed to
the provider over real HTTP, and the provider's redirect back is handed to the
app's callback over ASGI. The app talks to the provider (discovery, token,
JWKS) over real HTTP too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cogumi.app import create_app
from cogumi.tenancy.models import Membership, User
from tests.conftest import make_settings
from tests.factories import PASSWORD, unique_email
from tests.oidc_provider import LocalOidcProvider, ProviderAccount, TokenBehaviour

CLIENT_ID = "cogumi-test-client.apps.example"
CLIENT_SECRET = "local-provider-client-secret"
CALLBACK = "http://testserver/api/auth/oidc/callback"


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalOidcProvider]:
    server = LocalOidcProvider(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=CALLBACK
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def oidc_app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, provider: LocalOidcProvider
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url,
        tmp_path_factory.mktemp("oidc"),
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_discovery_url=provider.discovery_url,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def oidc_db(oidc_app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = oidc_app.state.sessionmaker
    return maker


@pytest.fixture
async def browser(oidc_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser's cookie jar, talking to the OIDC-enabled app."""
    transport = httpx.ASGITransport(app=oidc_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def person(**kwargs: object) -> ProviderAccount:
    values: dict[str, object] = {"subject": uuid.uuid4().hex, "email": unique_email("google")}
    values.update(kwargs)
    return ProviderAccount(**values)  # type: ignore[arg-type]


async def to_provider_and_back(browser: httpx.AsyncClient) -> str:
    """Start sign-in on the app, let the provider approve; returns the callback URL."""
    start = await browser.get("/api/auth/oidc/login")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as outside:
        approved = await outside.get(start.headers["location"])
    assert approved.status_code == 302, approved.text
    callback = approved.headers["location"]
    assert callback.startswith(CALLBACK + "?")
    return callback


async def sign_in(browser: httpx.AsyncClient) -> httpx.Response:
    return await browser.get(await to_provider_and_back(browser))


async def user_by_email(db: async_sessionmaker[AsyncSession], email: str) -> User | None:
    async with db() as session:
        return await session.scalar(select(User).where(User.email == email.lower()))


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}


# --- off unless configured ------------------------------------------------------


async def test_off_by_default(client: httpx.AsyncClient) -> None:
    config = await client.get("/api/auth/oidc/config")
    assert config.status_code == 200
    assert config.json() == {"enabled": False}
    for path in ("/api/auth/oidc/login", "/api/auth/oidc/callback?code=x&state=y"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json() == {
            "error": "not_found",
            "message": "OIDC sign-in is not configured",
        }


async def test_config_reports_enabled(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/api/auth/oidc/config")
    assert response.json() == {"enabled": True}


# --- the redirect to the provider ----------------------------------------------------


async def test_login_redirects_with_pkce_state_and_nonce(
    browser: httpx.AsyncClient, provider: LocalOidcProvider
) -> None:
    response = await browser.get("/api/auth/oidc/login")
    assert response.status_code == 302
    url = urlsplit(response.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == provider.url + "/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == CALLBACK
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["state"] != query["nonce"]
    flow_cookie = set_cookies(response)["cogumi_oidc"]
    assert "HttpOnly" in flow_cookie and "SameSite=lax" in flow_cookie
    assert "Path=/api/auth/oidc" in flow_cookie and "Max-Age=600" in flow_cookie
    again = await browser.get("/api/auth/oidc/login")
    assert parse_qs(urlsplit(again.headers["location"]).query)["state"][0] != query["state"]


# --- successful sign-ins -------------------------------------------------------------


async def test_first_sign_in_creates_user_and_org(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    account = person(name="Ada Lovelace")
    provider.sign_in_as(account)
    response = await sign_in(browser)
    assert response.status_code == 302, response.text
    assert response.headers["location"] == "/"
    cookies = set_cookies(response)
    assert "HttpOnly" in cookies["cogumi_session"] and "SameSite=lax" in cookies["cogumi_session"]
    assert "cogumi_csrf" in cookies
    assert 'cogumi_oidc=""' in cookies["cogumi_oidc"]  # the spent flow is dropped

    me = (await browser.get("/api/me")).json()
    assert me["user"]["email"] == account.email
    assert me["current_org"]["role"] == "OWNER"
    assert len(me["orgs"]) == 1
    user = await user_by_email(oidc_db, account.email)
    assert user is not None
    assert user.oidc_subject == account.subject
    assert user.password_hash is None
    assert user.display_name == "Ada Lovelace"
    browser.cookies.clear()
    no_password = await browser.post(
        "/api/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert no_password.status_code == 401


async def test_second_sign_in_reuses_the_user(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    account = person()
    provider.sign_in_as(account)
    first = await sign_in(browser)
    assert first.status_code == 302
    first_me = (await browser.get("/api/me")).json()
    browser.cookies.clear()
    # The subject, not the email, identifies the person on later sign-ins.
    provider.sign_in_as(person(subject=account.subject, email=unique_email("renamed")))
    second = await sign_in(browser)
    assert second.status_code == 302, second.text
    second_me = (await browser.get("/api/me")).json()
    assert second_me["user"]["id"] == first_me["user"]["id"]
    assert [o["id"] for o in second_me["orgs"]] == [o["id"] for o in first_me["orgs"]]
    async with oidc_db() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(User.oidc_subject == account.subject)
        )
        memberships = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.user_id == uuid.UUID(first_me["user"]["id"]))
        )
    assert count == 1 and memberships == 1


async def test_verified_email_links_existing_password_user(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    email = unique_email("pw")
    registered = await browser.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201
    user_id = registered.json()["user"]["id"]
    browser.cookies.clear()
    account = person(email=email.upper())
    provider.sign_in_as(account)
    response = await sign_in(browser)
    assert response.status_code == 302, response.text
    assert (await browser.get("/api/me")).json()["user"]["id"] == user_id
    user = await user_by_email(oidc_db, email)
    assert user is not None and user.oidc_subject == account.subject
    browser.cookies.clear()
    password_login = await browser.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert password_login.status_code == 200


async def test_email_linked_to_another_subject_is_refused(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    original = person()
    provider.sign_in_as(original)
    assert (await sign_in(browser)).status_code == 302
    browser.cookies.clear()
    provider.sign_in_as(person(email=original.email))
    response = await sign_in(browser)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "cogumi_session" not in set_cookies(response)
    user = await user_by_email(oidc_db, original.email)
    assert user is not None and user.oidc_subject == original.subject


# --- rejected callbacks write nothing ------------------------------------------------


async def test_wrong_state_is_rejected(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    account = person()
    provider.sign_in_as(account)
    callback = urlsplit(await to_provider_and_back(browser))
    query = {k: v[0] for k, v in parse_qs(callback.query).items()}
    query["state"] = "not-the-state-this-browser-was-given"
    response = await browser.get(f"{CALLBACK}?{urlencode(query)}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_request" and body["reason"] == "state_mismatch"
    assert "sign-in attempt" in body["message"]
    assert "cogumi_session" not in set_cookies(response)
    assert await user_by_email(oidc_db, account.email) is None


async def test_callback_in_another_browser_is_rejected(
    browser: httpx.AsyncClient, oidc_app: FastAPI, provider: LocalOidcProvider
) -> None:
    provider.sign_in_as(person())
    callback = await to_provider_and_back(browser)
    transport = httpx.ASGITransport(app=oidc_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        response = await other.get(callback)
    assert response.status_code == 400
    assert response.json()["reason"] == "state_missing"


async def test_forged_flow_cookie_is_rejected(
    browser: httpx.AsyncClient, provider: LocalOidcProvider
) -> None:
    provider.sign_in_as(person())
    callback = await to_provider_and_back(browser)
    browser.cookies.set("cogumi_oidc", "eyJzdGF0ZSI6IngifQ.forged.signature", path="/api/auth/oidc")
    response = await browser.get(callback)
    assert response.status_code == 400
    assert response.json()["reason"] == "state_invalid"


async def test_callback_is_single_use(
    browser: httpx.AsyncClient, provider: LocalOidcProvider
) -> None:
    provider.sign_in_as(person())
    callback = await to_provider_and_back(browser)
    assert (await browser.get(callback)).status_code == 302
    replay = await browser.get(callback)
    assert replay.status_code == 400
    assert replay.json()["reason"] == "state_missing"


async def test_provider_error_is_reported(
    browser: httpx.AsyncClient, provider: LocalOidcProvider
) -> None:
    provider.sign_in_as(person(), TokenBehaviour(deny_with="access_denied"))
    response = await sign_in(browser)
    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == "provider_error" and body["provider_error"] == "access_denied"
    assert "did not sign you in" in body["message"]


async def test_unverified_email_is_rejected_and_not_linked(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    email = unique_email("pw")
    registered = await browser.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201
    browser.cookies.clear()
    provider.sign_in_as(person(email=email, email_verified=False))
    response = await sign_in(browser)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthenticated" and body["reason"] == "email_not_verified"
    assert email in body["message"]
    assert "cogumi_session" not in set_cookies(response)
    user = await user_by_email(oidc_db, email)
    assert user is not None and user.oidc_subject is None


async def test_unverified_email_creates_nobody(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
) -> None:
    account = person(email_verified=False)
    provider.sign_in_as(account)
    response = await sign_in(browser)
    assert response.status_code == 401
    assert await user_by_email(oidc_db, account.email) is None


BAD_TOKENS = {
    "tampered payload": TokenBehaviour(tamper_payload=True),
    "signed by another key": TokenBehaviour(foreign_key=True),
    "expired": TokenBehaviour(
        claim_overrides={"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}
    ),
    "wrong audience": TokenBehaviour(claim_overrides={"aud": "someone-elses-client"}),
    "wrong issuer": TokenBehaviour(claim_overrides={"iss": "https://evil.example"}),
    "wrong nonce": TokenBehaviour(claim_overrides={"nonce": "replayed-nonce"}),
    "no expiry": TokenBehaviour(drop_claims=("exp",)),
    "unsigned (alg none)": TokenBehaviour(unsigned=True),
}


@pytest.mark.parametrize("behaviour", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_invalid_id_token_is_rejected(
    browser: httpx.AsyncClient,
    provider: LocalOidcProvider,
    oidc_db: async_sessionmaker[AsyncSession],
    behaviour: TokenBehaviour,
) -> None:
    account = person()
    provider.sign_in_as(account, behaviour)
    response = await sign_in(browser)
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "unauthenticated" and body["reason"] == "invalid_id_token"
    assert body["message"].startswith("the identity provider's ID token is not valid")
    assert "cogumi_session" not in set_cookies(response)
    assert (await browser.get("/api/me")).status_code == 401
    assert await user_by_email(oidc_db, account.email) is None


async def test_pkce_verifier_is_what_the_provider_checks(
    browser: httpx.AsyncClient, provider: LocalOidcProvider
) -> None:
    """A code minted for another sign-in attempt (another verifier) is refused."""
    provider.sign_in_as(person())
    stolen = parse_qs(urlsplit(await to_provider_and_back(browser)).query)["code"][0]
    victim_callback = urlsplit(await to_provider_and_back(browser))
    query = {k: v[0] for k, v in parse_qs(victim_callback.query).items()}
    query["code"] = stolen
    response = await browser.get(f"{CALLBACK}?{urlencode(query)}")
    assert response.status_code == 401
    assert response.json()["reason"] == "code_rejected"
