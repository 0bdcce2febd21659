"""Webhook secrets and signatures.

The signing secret must be usable later (every delivery is signed with it),
so unlike API keys it cannot be stored as a hash. It is stored encrypted with
Fernet under a key derived (HKDF-SHA256) from the deployment's secret key:
a database dump alone does not reveal it. Changing ``COGUMI_SECRET_KEY``
makes stored secrets unreadable; their deliveries then fail with a message
asking to rotate the webhook's secret.

Signature header: ``X-Cogumi-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{t}." + body)``. Receivers recompute it over the
raw body and refuse old timestamps (replay protection).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "X-Cogumi-Signature"
DEFAULT_TOLERANCE_SEC = 300
_HKDF_INFO = b"cogumi webhook secret encryption v1"


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted with the current secret key."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_preview(secret: str) -> str:
    """The part shown after creation: enough to tell two secrets apart."""
    return secret[: len(SECRET_PREFIX) + 4]


def _fernet(secret_key: str) -> Fernet:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())))


def encrypt_secret(secret: str, *, secret_key: str) -> str:
    return _fernet(secret_key).encrypt(secret.encode()).decode()


def decrypt_secret(token: str, *, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "the signing secret cannot be decrypted (was COGUMI_SECRET_KEY changed?); "
            "rotate this webhook's secret"
        ) from exc


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``X-Cogumi-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_sec: int = DEFAULT_TOLERANCE_SEC,
    now: float | None = None,
) -> bool:
    """Receiver side: is ``header`` a fresh, valid signature of ``body``?"""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_sec:
        return False
    expected = sign(secret, body, timestamp=t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
