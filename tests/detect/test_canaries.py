"""Canaries: minted shapes, exact detection at confidence 1.0, encoded sightings."""

from __future__ import annotations

import base64
import hashlib

from cogumi.detect import find_secrets, mint_canaries
from cogumi.detect.canaries import MARKER


def test_minted_canaries_have_the_shape_of_real_keys_and_the_marker() -> None:
    canaries = mint_canaries()
    assert canaries["OPENAI_KEY"].startswith("sk-proj-" + MARKER)
    assert canaries["AWS_ACCESS_KEY"].startswith("AKIA" + MARKER.upper())
    assert len(canaries["AWS_ACCESS_KEY"]) == 20
    assert canaries["JWT"].startswith("eyJ") and canaries["JWT"].count(".") == 2
    for kind, value in canaries.items():
        text = f"aws_secret_access_key = {value}" if kind == "AWS_SECRET_KEY" else value
        assert [m.kind for m in find_secrets(text)] == [kind], kind


def test_minting_is_unique_unless_seeded() -> None:
    assert mint_canaries() != mint_canaries()
    assert mint_canaries("run-42") == mint_canaries("run-42")
    assert mint_canaries("run-42") != mint_canaries("run-43")


def test_registered_canary_is_a_canary_with_confidence_one() -> None:
    canaries = mint_canaries()
    text = f"sure, the key is {canaries['OPENAI_KEY']} and id {canaries['AWS_ACCESS_KEY']}"
    found = find_secrets(text, canaries=canaries.values())
    assert [(m.kind, m.confidence) for m in found] == [("CANARY", 1.0), ("CANARY", 1.0)]
    assert found[0].hash == hashlib.sha256(canaries["OPENAI_KEY"].encode()).hexdigest()
    assert found[0].preview.startswith("sk-proj-…")


def test_base64_smuggled_canary_is_still_seen_at_every_alignment() -> None:
    canary = mint_canaries()["AWS_SECRET_KEY"]
    for prefix in ("", "a", "ab"):
        blob = base64.b64encode(f"{prefix}creds={canary};".encode()).decode()
        found = find_secrets(f"GET /collect?d={blob}", canaries=[canary])
        assert any(m.kind == "CANARY" and m.confidence == 1.0 for m in found), prefix
        assert all(
            m.hash == hashlib.sha256(canary.encode()).hexdigest()
            for m in found
            if m.kind == "CANARY"
        )


def test_too_short_registered_values_are_ignored() -> None:
    assert find_secrets("the word hello appears", canaries=["hello"]) == []


def test_every_minted_canary_is_found_whole_without_registration() -> None:
    """The server keeps only hashes: a sighting is a match whose hash is a canary's.

    So the detector alone must match each minted value whole, with no context
    around it, whatever its random body looks like (one AWS-secret-shaped value
    in twelve used to be split at a ``/`` or passed over as wordy).
    """
    missed = []
    for n in range(1500):
        for kind, value in mint_canaries(seed=f"seed-{n}").items():
            for text in (f"leaked: {value}", f'"{value}"', f"{kind}={value}."):
                digest = hashlib.sha256(value.encode()).hexdigest()
                if not any(m.hash == digest for m in find_secrets(text)):
                    missed.append((kind, text))
    assert missed == []
