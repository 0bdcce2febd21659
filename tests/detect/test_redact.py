"""Redaction never lets a raw value through; truncation is UTF-8 safe."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cogumi.detect import find_secrets, mint_canaries, redact_headers, redact_text
from cogumi.detect.credentials import credential_spans
from cogumi.detect.redact import DEFAULT_LIMIT, needing_scan, nothing_to_mask
from cogumi.detect.secrets import scan_all
from tests.datasets import dataset

NOSEY_PARKER = "noseyparker-secret-examples"

KEYS = [
    "sk-proj-Xq3vT9bLm2Pz8Rk4Wn7Yc1Hd6Jf0Gs5Qa2Ue8Io4Ly9Tb3Nc7Mx1Vz",
    "AKIA4QWERT7YUI2OPLKJ",
    "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",
    "xoxb-262541194339-1293084920079-Z21cXgXdDdZDABIcrdG3D9OF",
    "AIzaSyB4sU8lU15bR_87qNb7eUVQN72_vv8mpbU",
]
CANARIES = mint_canaries("redaction-tests")


def test_replaces_each_match_with_kind_and_preview() -> None:
    text, matches = redact_text(f"key={KEYS[2]} ok")
    assert text == "key=[REDACTED:GITHUB_TOKEN:ghp_…xL] ok"
    assert [m.kind for m in matches] == ["GITHUB_TOKEN"]


@settings(max_examples=150, deadline=None)
@given(
    before=st.text(max_size=200),
    after=st.text(max_size=200),
    secret=st.sampled_from(KEYS + list(CANARIES.values())),
    copies=st.integers(min_value=1, max_value=3),
)
def test_no_raw_secret_survives_redaction(
    before: str, after: str, secret: str, copies: int
) -> None:
    text = (before + " " + secret + " ") * copies + after
    redacted, matches = redact_text(text, canaries=CANARIES.values())
    assert secret not in redacted
    assert matches


@settings(max_examples=60, deadline=None)
@given(filler=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_truncation_is_utf8_safe_and_within_limit(filler: str) -> None:
    text = filler * (DEFAULT_LIMIT // max(1, len(filler.encode())) + 50)
    redacted, _ = redact_text(text)
    encoded = redacted.encode("utf-8")
    assert len(encoded) <= DEFAULT_LIMIT
    assert encoded.decode("utf-8") == redacted


def test_truncates_multibyte_text_without_splitting_a_character() -> None:
    text = "é" * 40000  # 80,000 bytes
    redacted, _ = redact_text(text)
    assert len(redacted.encode()) == DEFAULT_LIMIT
    assert set(redacted) == {"é"}


def test_secret_straddling_the_limit_is_still_masked() -> None:
    secret = CANARIES["OPENAI_KEY"]
    text = "a" * (100 - 20) + secret + " tail"
    redacted, matches = redact_text(text, canaries=CANARIES.values(), limit=100)
    assert len(redacted.encode()) <= 100
    assert secret[:12] not in redacted and "sk-proj-cgm" not in redacted
    assert matches[0].kind == "CANARY"


def test_headers_credentials_masked_whole_and_others_scanned() -> None:
    headers = [
        ("Authorization", f"Bearer {KEYS[0]}"),
        ("Cookie", "session=abc123def456; theme=dark"),
        ("X-Api-Key", "plain-looking-value"),
        ("X-Upstream-Token", "whatever"),
        ("User-Agent", f"agent/1.0 leaked={KEYS[1]}"),
        ("Accept", "application/json"),
    ]
    redacted, matches = redact_headers(headers)
    values = dict(redacted)
    assert values["Authorization"] == "Bearer [REDACTED:OPENAI_KEY:sk-proj-…Vz]"
    assert values["Cookie"] == "session=[REDACTED:HEADER]; theme=[REDACTED:HEADER]"
    assert values["X-Api-Key"] == "[REDACTED:HEADER]"
    assert values["X-Upstream-Token"] == "[REDACTED:HEADER]"
    assert values["User-Agent"] == "agent/1.0 leaked=[REDACTED:AWS_ACCESS_KEY:AKIA…KJ]"
    assert values["Accept"] == "application/json"
    assert [m.kind for m in matches] == ["OPENAI_KEY", "AWS_ACCESS_KEY"]
    flat = " ".join(v for _, v in redacted)
    assert KEYS[0] not in flat and KEYS[1] not in flat and "abc123def456" not in flat


def test_canary_in_a_header_is_reported() -> None:
    canary = CANARIES["JWT"]
    redacted, matches = redact_headers([("Authorization", f"Bearer {canary}")], canaries=[canary])
    assert redacted[0][1].startswith("Bearer [REDACTED:CANARY:eyJ…")
    assert [(m.kind, m.confidence) for m in matches] == [("CANARY", 1.0)]


def test_credential_headers_report_what_find_secrets_finds_in_their_value() -> None:
    """A credential header is scanned once for both its mask and its matches; the
    matches are still exactly find_secrets of the (stripped) value."""
    values = [f" Bearer {KEYS[0]} ", f"session={KEYS[1]}; x=1", "Basic dXNlcjpwYXNz", "plain"]
    for name in ("Authorization", "Cookie", "X-Api-Key", "X-Session-Id"):
        for value in values:
            _, matches = redact_headers([(name, value)])
            assert matches == find_secrets(value.strip()), (name, value)


# A Facebook token longer than the generic assignment rule's 128-character cap.
LONG_TOKEN = (
    "EAACEdEose0cBAD5XZCz5JXYvqyeJzcSvFZC42toHiWyfjhcZCMZBZCpE3uRJnEBsrhUEMRK1wWs6Ssdi"
    "DCaCI1mYwyoNuMix2XZCpvsKbZB9TumtZBlcLeIpl4pa931Ce9rTinEAhtyVVZAAZAX4NmfpBUqWtzCRC0"
    "fX5GZBn7ZC28mPKAZDZD"
)


def test_a_match_cut_short_inside_a_token_masks_the_token_to_its_end() -> None:
    text = f"url = 'https://graph.facebook.com/me?access_token={LONG_TOKEN}&limit=5'"
    redacted, matches = redact_text(text)
    assert [m.kind for m in matches] == ["GENERIC_SECRET"]
    assert redacted == (
        "url = 'https://graph.facebook.com/me?access_token=[REDACTED:GENERIC_SECRET:…31]&limit=5'"
    )
    assert LONG_TOKEN[-40:] not in redacted


def test_a_key_ending_at_a_boundary_masks_nothing_past_it() -> None:
    text = f"GET /v1/keys/{KEYS[2]}/rotate?x={KEYS[1]}-old"
    redacted, _ = redact_text(text)
    assert redacted == (
        "GET /v1/keys/[REDACTED:GITHUB_TOKEN:ghp_…xL]/rotate?x=[REDACTED:AWS_ACCESS_KEY:AKIA…KJ]-old"
    )


def test_redacted_text_holds_nothing_a_second_scan_would_find() -> None:
    """Every Nosey Parker example, redacted once, is clean: no rule, entropy or PEM
    hit is left in what would be stored (a left-over tail of a secret would be one)."""
    lines = (dataset(NOSEY_PARKER) / "secret_examples.jsonl").read_text("utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    redacted = {t[:60]: redact_text(t)[0] for t in texts}
    left = {k: (scan_all(r), credential_spans(r)) for k, r in redacted.items()}
    assert {k: v for k, v in left.items() if v != ([], [])} == {}
    assert len(texts) > 500


def example_groups(seed: int = 7) -> list[list[str]]:
    """Every Nosey Parker example (secrets and non-secrets), each in groups with
    others and with ordinary header-like text, and each cut in two at a random place."""
    lines = (dataset(NOSEY_PARKER) / "secret_examples.jsonl").read_text("utf-8").splitlines()
    examples = [json.loads(line)["text"] for line in lines]
    ordinary = ["POST api.example.com/v1/items", "application/json", "", "ok", 'é ✓ \\n "x"', "*/*"]
    rng = random.Random(seed)
    groups = []
    for _ in range(3):
        shuffled = rng.sample(examples, len(examples))
        while shuffled:
            size = rng.randint(1, 6)
            group, shuffled = shuffled[:size], shuffled[size:]
            groups.append(rng.sample(group + rng.sample(ordinary, 2), len(group) + 2))
    for text in examples:
        cut = rng.randint(0, len(text))
        groups.append([text[:cut], text[cut:]])
    return groups


def test_one_scan_of_texts_joined_misses_nothing_a_scan_of_each_finds() -> None:
    """:func:`nothing_to_mask` scans several texts joined; redaction then skips each
    text's own scan. That is only safe if no text alone holds a find the joined scan
    misses."""
    checked = 0
    for group in example_groups():
        alone = {i for i, text in enumerate(group) if scan_all(text) or credential_spans(text)}
        dirty = needing_scan(group)
        assert alone <= dirty, group  # every text with a find of its own is scanned again
        assert nothing_to_mask(group) == (not dirty)
        checked += bool(alone)
    assert checked > 500


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.text(max_size=60), min_size=1, max_size=5),
    secret=st.sampled_from(KEYS + list(CANARIES.values())),
    where=st.integers(min_value=0, max_value=4),
    at=st.integers(min_value=0, max_value=60),
)
def test_a_secret_in_any_piece_is_never_clean(
    pieces: list[str], secret: str, where: int, at: int
) -> None:
    index = where % len(pieces)
    piece = pieces[index]
    pieces[index] = f"{piece[:at]} {secret} {piece[at:]}"
    assert not nothing_to_mask(pieces, canaries=frozenset(CANARIES.values()))


def test_clean_redaction_only_cuts() -> None:
    text = "é" * 40_000  # 80,000 UTF-8 bytes
    assert nothing_to_mask([text])
    assert redact_text(text, clean=True) == redact_text(text)
    assert len(redact_text(text, clean=True)[0].encode()) <= DEFAULT_LIMIT
    headers = [("Authorization", "Bearer opaque"), ("Cookie", "a=1; b=2"), ("Accept", "*/*")]
    assert redact_headers(headers, clean=True) == redact_headers(headers)
