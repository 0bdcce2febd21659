"""Password hashing, opaque tokens and CSRF tokens.

Passwords use argon2id. Tokens (sessions, API keys, sidecar tokens,
invitations) carry 256 bits of randomness, so a plain sha256 is the right
stored form: it is a lookup key, not a slow hash of a guessable secret.
Prefixed tokens look like ``cgk_<prefix>_<secret>``; the prefix is not secret
and finds the row, the hash proves possession.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

# Verified against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class IssuedToken:
    """A newly minted prefixed token: ``plaintext`` is shown once, never stored."""

    plaintext: str
    prefix: str
    hash: str


def issue_prefixed_token(kind: str) -> IssuedToken:
    """Mint ``<kind>_<prefix>_<secret>`` (kind is ``cgk`` for API keys, ``cgs`` for sidecars)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{kind}_{prefix}_{secret}"
    return IssuedToken(plaintext=plaintext, prefix=prefix, hash=sha256_hex(plaintext))


def split_prefixed_token(token: str, kind: str) -> str | None:
    """The prefix of a well-formed token of ``kind``, or None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != kind or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(sha256_hex(token), stored_hash)


def csrf_token(session_token: str, key: str) -> str:
    """CSRF token bound to one session: HMAC of the session token, nothing stored."""
    return hmac.new(key.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()
