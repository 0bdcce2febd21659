"""Google (or any OpenID Connect provider) sign-in: authorization code flow with PKCE.

The browser is sent to the provider with a fresh ``state``, ``nonce`` and PKCE
verifier, all kept in one short-lived signed cookie scoped to this router's
path, so only the browser that started a sign-in can finish it. The callback
checks ``state``, exchanges the code (Authlib's ``AsyncOAuth2Client`` sends the
verifier and the client credentials), validates the ID token against the
provider's published keys (joserfc, the JOSE library Authlib itself builds on)
and only then touches the database. Every check happens before the first
write, so a rejected callback leaves nothing behind.

Sign-in is off unless a client id and secret are configured; the login and
callback routes then answer 404 as if they did not exist.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cogumi.config import Settings
from cogumi.errors import (
    BadRequest,
    CogumiError,
    Conflict,
    NotFound,
    Unauthenticated,
    error_response,
)
from cogumi.schemas import Output
from cogumi.tenancy import service
from cogumi.tenancy.deps import AppSettings, DbSession
from cogumi.tenancy.models import User
from cogumi.tenancy.routes import client_ip, set_login_cookies

log = logging.getLogger(__name__)

router = APIRouter(prefix="/auth/oidc", tags=["auth"])

FLOW_COOKIE = "cogumi_oidc"
FLOW_COOKIE_PATH = "/api/auth/oidc"
FLOW_MAX_AGE_SEC = 600
SCOPE = "openid email profile"
ALGORITHMS = ("RS256",)
CLOCK_LEEWAY_SEC = 60
_SALT = "cogumi.oidc.flow"
_GOOGLE_ISSUER = "https://accounts.google.com"


class ProviderUnavailable(CogumiError):
    """The identity provider could not be reached or sent something unusable (502)."""

    status_code = 502
    code = "oidc_provider_unavailable"


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document this flow needs."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class Identity:
    """Who the provider vouches for, taken from a validated ID token."""

    subject: str
    email: str
    name: str


class OidcConfigOut(Output):
    enabled: bool


# --- provider metadata and keys ---------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_url(value: object, what: str) -> str:
    """HTTPS only, except plain HTTP on loopback (a provider on this machine)."""
    if not isinstance(value, str) or not value:
        raise ProviderUnavailable(f"the provider's discovery document has no {what}")
    parts = urlsplit(value)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
        return value
    raise ProviderUnavailable(f"the provider's {what} must use https: {value}")


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await http.get(url)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OIDC %s fetch from %s failed: %r", what, url, exc)
        raise ProviderUnavailable(f"could not fetch the provider's {what}") from exc
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"the provider's {what} is not a JSON object")
    return data


async def fetch_metadata(http: httpx.AsyncClient, discovery_url: str) -> ProviderMetadata:
    """Read and check the discovery document (its issuer must be the URL's prefix)."""
    doc = await _get_json(http, _checked_url(discovery_url, "discovery URL"), "discovery document")
    issuer = _checked_url(doc.get("issuer"), "issuer")
    if issuer.rstrip("/") + "/.well-known/openid-configuration" != discovery_url:
        raise ProviderUnavailable("the discovery document's issuer does not match its URL")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_checked_url(
            doc.get("authorization_endpoint"), "authorization endpoint"
        ),
        token_endpoint=_checked_url(doc.get("token_endpoint"), "token endpoint"),
        jwks_uri=_checked_url(doc.get("jwks_uri"), "jwks_uri"),
    )


async def fetch_keys(http: httpx.AsyncClient, metadata: ProviderMetadata) -> KeySet:
    data = await _get_json(http, metadata.jwks_uri, "signing keys")
    try:
        return KeySet.import_key_set(data)  # type: ignore[arg-type]
    except (JoseError, KeyError, TypeError, ValueError) as exc:
        raise ProviderUnavailable("the provider's signing keys could not be read") from exc


def _oauth_client(settings: Settings) -> AsyncOAuth2Client:
    secret = settings.oidc_client_secret
    return AsyncOAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        scope=SCOPE,
        redirect_uri=callback_url(settings),
        code_challenge_method="S256",
        timeout=settings.request_timeout_sec,
    )


def callback_url(settings: Settings) -> str:
    """The redirect URI to register at the provider."""
    return settings.base_url + "/api/auth/oidc/callback"


# --- the browser-bound flow cookie --------------------------------------------


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.resolved_secret_key(), salt=_SALT)


def _remember_flow(response: Response, settings: Settings, flow: dict[str, str]) -> None:
    response.set_cookie(
        FLOW_COOKIE,
        _serializer(settings).dumps(flow),
        max_age=FLOW_MAX_AGE_SEC,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path=FLOW_COOKIE_PATH,
    )


def _forget_flow(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        FLOW_COOKIE,
        path=FLOW_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def _load_flow(request: Request, settings: Settings, state: str | None) -> dict[str, str]:
    """The flow this browser started, if ``state`` is the one it was given."""
    raw = request.cookies.get(FLOW_COOKIE)
    if not raw:
        raise BadRequest(
            "no sign-in in progress in this browser (or it took longer than 10 minutes); "
            "start again",
            reason="state_missing",
        )
    try:
        flow = _serializer(settings).loads(raw, max_age=FLOW_MAX_AGE_SEC)
    except BadSignature as exc:
        raise BadRequest(
            "the sign-in attempt expired or was tampered with; start again",
            reason="state_invalid",
        ) from exc
    if (
        not isinstance(flow, dict)
        or not state
        or not secrets.compare_digest(str(flow.get("state", "")), state)
    ):
        raise BadRequest(
            "the sign-in response does not belong to this browser's sign-in attempt",
            reason="state_mismatch",
        )
    return {str(k): str(v) for k, v in flow.items()}


# --- ID token -----------------------------------------------------------------


def _issuers(issuer: str) -> list[str]:
    # Google documents both spellings of its issuer in ID tokens.
    if issuer.rstrip("/") == _GOOGLE_ISSUER:
        return [_GOOGLE_ISSUER, "accounts.google.com"]
    return [issuer]


def validate_id_token(
    id_token: str, *, keys: KeySet, issuer: str, client_id: str, nonce: str
) -> Identity:
    """Signature (provider keys, RS256), iss, aud, azp, exp, nonce, and a verified email."""
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY_SEC,
            iss={"essential": True, "values": _issuers(issuer)},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError) as exc:
        log.info("OIDC ID token rejected: %s", type(exc).__name__)
        raise Unauthenticated(
            f"the identity provider's ID token is not valid ({_describe(exc)})",
            reason="invalid_id_token",
        ) from exc
    return _identity(token.claims, client_id)


def _describe(exc: Exception) -> str:
    text = getattr(exc, "description", "") or str(exc) or type(exc).__name__
    return str(text)[:200]


def _identity(claims: dict[str, Any], client_id: str) -> Identity:
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise Unauthenticated(
            "the identity provider's ID token was issued to another client",
            reason="invalid_id_token",
        )
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise Unauthenticated(
            "the identity provider did not share an email address", reason="email_missing"
        )
    if claims.get("email_verified") not in (True, "true"):
        raise Unauthenticated(
            f"the identity provider has not verified {email}; verify it there first",
            reason="email_not_verified",
        )
    name = claims.get("name")
    return Identity(
        subject=str(claims["sub"]),
        email=service.normalize_email(email),
        name=name[:120] if isinstance(name, str) else "",
    )


# --- the callback's checks, then its one write ------------------------------


async def _exchange_code(
    settings: Settings, metadata: ProviderMetadata, *, code: str, verifier: str
) -> str:
    async with _oauth_client(settings) as client:
        try:
            token = await client.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
            )
        except OAuthError as exc:
            raise Unauthenticated(
                f"the identity provider refused the sign-in code ({exc.error})",
                reason="code_rejected",
            ) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable("could not reach the provider's token endpoint") from exc
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise Unauthenticated(
            "the identity provider returned no ID token", reason="invalid_id_token"
        )
    return id_token


async def verify_callback(
    request: Request,
    settings: Settings,
    *,
    code: str | None,
    state: str | None,
    error: str | None,
) -> Identity:
    """Everything the callback must prove before it may write anything."""
    if error:
        raise BadRequest(
            f"the identity provider did not sign you in ({error[:100]})",
            reason="provider_error",
            provider_error=error[:100],
        )
    flow = _load_flow(request, settings, state)
    if not code:
        raise BadRequest("the sign-in response carries no code", reason="code_missing")
    async with httpx.AsyncClient(timeout=settings.request_timeout_sec) as http:
        metadata = await fetch_metadata(http, settings.oidc_discovery_url)
        id_token = await _exchange_code(settings, metadata, code=code, verifier=flow["verifier"])
        keys = await fetch_keys(http, metadata)
    return validate_id_token(
        id_token,
        keys=keys,
        issuer=metadata.issuer,
        client_id=settings.oidc_client_id or "",
        nonce=flow["nonce"],
    )


async def user_for_identity(session: AsyncSession, *, identity: Identity, ip: str = "") -> User:
    """The linked user; else the user with this (verified) email, now linked; else a new one."""
    user = await session.scalar(select(User).where(User.oidc_subject == identity.subject))
    if user is not None:
        return user
    user = await service.find_user_by_email(session, identity.email)
    if user is None:
        user, _org = await service.register(
            session,
            email=identity.email,
            password=None,
            display_name=identity.name,
            oidc_subject=identity.subject,
            ip=ip,
        )
        return user
    if user.oidc_subject is not None:
        raise Conflict(
            f"the account for {identity.email} is linked to a different sign-in identity",
            reason="identity_conflict",
        )
    user.oidc_subject = identity.subject
    if not user.display_name and identity.name:
        user.display_name = identity.name
    await session.flush()
    return user


# --- routes -------------------------------------------------------------------


def _require_enabled(settings: Settings) -> None:
    if not settings.oidc_enabled:
        raise NotFound("OIDC sign-in is not configured")


@router.get("/config", response_model=OidcConfigOut)
async def oidc_config(settings: AppSettings) -> OidcConfigOut:
    """Whether the sign-in page should offer "Sign in with Google"."""
    return OidcConfigOut(enabled=settings.oidc_enabled)


@router.get("/login", response_class=RedirectResponse, status_code=302)
async def oidc_login(settings: AppSettings) -> Response:
    """Start sign-in: redirect to the provider with state, nonce and a PKCE challenge."""
    _require_enabled(settings)
    async with httpx.AsyncClient(timeout=settings.request_timeout_sec) as http:
        metadata = await fetch_metadata(http, settings.oidc_discovery_url)
    flow = {
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "verifier": secrets.token_urlsafe(48),
    }
    async with _oauth_client(settings) as client:
        url, _ = client.create_authorization_url(
            metadata.authorization_endpoint,
            state=flow["state"],
            code_verifier=flow["verifier"],
            nonce=flow["nonce"],
        )
    response = RedirectResponse(url, status_code=302)
    _remember_flow(response, settings, flow)
    return response


@router.get("/callback", response_class=RedirectResponse, status_code=302)
async def oidc_callback(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    """Finish sign-in: verify the provider's answer, sign the user in, redirect to ``/``."""
    _require_enabled(settings)
    try:
        identity = await verify_callback(request, settings, code=code, state=state, error=error)
    except CogumiError as exc:
        # Nothing is written before this point; the spent flow cookie is dropped.
        failed = error_response(exc.status_code, exc.body(), exc.headers())
        _forget_flow(failed, settings)
        return failed
    user = await user_for_identity(session, identity=identity, ip=client_ip(request))
    token = await service.start_session(
        session,
        user=user,
        ttl=timedelta(hours=settings.session_ttl_hours),
        user_agent=request.headers.get("user-agent", ""),
    )
    response = RedirectResponse("/", status_code=302)
    set_login_cookies(response, token, settings)
    _forget_flow(response, settings)
    return response
