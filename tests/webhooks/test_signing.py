"""Signing and secret storage, without a server."""

from __future__ import annotations

import pytest

from cogumi.webhooks import signing


def test_signature_round_trip_and_replay_window() -> None:
    secret = signing.new_secret()
    body = b'{"type":"run.completed"}'
    header = signing.sign(secret, body, timestamp=1_700_000_000)
    assert signing.verify(secret, header, body, now=1_700_000_010)
    assert not signing.verify(secret, header, body, now=1_700_000_000 + 301)
    assert not signing.verify(secret, header, b'{"type":"run.failed"}', now=1_700_000_010)
    assert not signing.verify(secret, "t=abc,v1=00", body)
    assert not signing.verify(secret, "", body)


def test_secret_encryption_depends_on_the_deployment_key() -> None:
    secret = signing.new_secret()
    token = signing.encrypt_secret(secret, secret_key="key-one")
    assert secret not in token
    assert signing.decrypt_secret(token, secret_key="key-one") == secret
    with pytest.raises(signing.SecretUnreadable, match="rotate"):
        signing.decrypt_secret(token, secret_key="key-two")
