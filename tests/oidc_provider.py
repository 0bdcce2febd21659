"""A small OpenID Connect provider on 127.0.0.1, so sign-in tests never leave the machine.

It serves discovery, authorize, token and JWKS over real HTTP (uvicorn on an
ephemeral port, in a thread). ``/authorize`` approves at once as the account
the test chose with :meth:`LocalOidcProvider.sign_in_as` and redirects back
with a code. ``/token`` is strict the way a real provider is: client
credentials, single-use codes, the registered redirect URI and the PKCE (S256)
verifier must all match, else it answers ``invalid_grant``/``invalid_client``.
ID tokens are RS256-signed with a key generated per provider; tests can bend
them (claim overrides, a foreign signing key, a tampered payload) to check the
client refuses them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

KEY_ID = "local-test-key"


@dataclass
class ProviderAccount:
    """The person the provider says signed in."""

    subject: str
    email: str
    email_verified: bool = True
    name: str = "Test Person"


@dataclass
class TokenBehaviour:
    """How the next ID tokens deviate from a correct one (all off by default)."""

    claim_overrides: dict[str, Any] = field(default_factory=dict)
    drop_claims: tuple[str, ...] = ()
    foreign_key: bool = False
    tamper_payload: bool = False
    unsigned: bool = False
    deny_with: str | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


class LocalOidcProvider:
    """Discovery + authorize + token + JWKS for one registered client."""

    def __init__(self, *, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        params = {"kid": KEY_ID, "use": "sig", "alg": "RS256"}
        self.key = RSAKey.generate_key(2048, parameters=params)  # type: ignore[arg-type]
        self.foreign_key = RSAKey.generate_key(2048, parameters=params)  # type: ignore[arg-type]
        self.account: ProviderAccount | None = None
        self.behaviour = TokenBehaviour()
        self.codes: dict[str, dict[str, str]] = {}
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- test controls ---------------------------------------------------------

    def sign_in_as(self, account: ProviderAccount, behaviour: TokenBehaviour | None = None) -> None:
        self.account = account
        self.behaviour = behaviour or TokenBehaviour()

    @property
    def discovery_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._app(), log_level="warning", lifespan="off", ws="none", http="h11"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("local OIDC provider did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # -- endpoints -------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/jwks", self._jwks),
            ]
        )

    async def _discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": self.url + "/authorize",
                "token_endpoint": self.url + "/token",
                "jwks_uri": self.url + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
            }
        )

    async def _jwks(self, _: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        problem = self._authorize_problem(q)
        if problem:
            return PlainTextResponse(problem, status_code=400)
        if self.behaviour.deny_with:
            query = urlencode({"error": self.behaviour.deny_with, "state": q["state"]})
            return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "nonce": q["nonce"],
            "redirect_uri": q["redirect_uri"],
        }
        query = urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    def _authorize_problem(self, q: Any) -> str | None:
        checks = {
            "response_type must be code": q.get("response_type") == "code",
            "unknown client_id": q.get("client_id") == self.client_id,
            "redirect_uri is not registered": q.get("redirect_uri") == self.redirect_uri,
            "scope must include openid": "openid" in q.get("scope", "").split(),
            "PKCE S256 challenge required": q.get("code_challenge_method") == "S256"
            and bool(q.get("code_challenge")),
            "state required": bool(q.get("state")),
            "nonce required": bool(q.get("nonce")),
            "nobody is signed in at the provider": self.account is not None,
        }
        return next((message for message, ok in checks.items() if not ok), None)

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return (user, password) == (self.client_id, self.client_secret)
        return (form.get("client_id"), form.get("client_secret")) == (
            self.client_id,
            self.client_secret,
        )

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not self._client_authenticated(request, form):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form.get("code", "")), None)  # single use
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or form.get("redirect_uri") != grant["redirect_uri"]
            or _s256(str(form.get("code_verifier", ""))) != grant["challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "id_token": self._id_token(grant["nonce"]),
            }
        )

    def _id_token(self, nonce: str) -> str:
        assert self.account is not None
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": self.account.subject,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "email": self.account.email,
            "email_verified": self.account.email_verified,
            "name": self.account.name,
        }
        claims.update(self.behaviour.claim_overrides)
        for name in self.behaviour.drop_claims:
            claims.pop(name, None)
        if self.behaviour.unsigned:
            return _unsigned(claims)
        key = self.foreign_key if self.behaviour.foreign_key else self.key
        token = jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, key)
        return _tampered(token) if self.behaviour.tamper_payload else token


def _tampered(token: str) -> str:
    """Same header and signature, payload edited: the email is swapped."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["email"] = "someone-else@example.com"
    return ".".join([header, _b64url(json.dumps(data).encode()), signature])


def _unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token: no signature at all."""
    header = _b64url(json.dumps({"alg": "none", "kid": KEY_ID}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}."
