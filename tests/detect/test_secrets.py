"""Each secret kind: a positive, a look-alike negative, placeholders and previews."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from cogumi.detect import SecretMatch, find_secrets
from cogumi.detect.heuristics import PLACEHOLDER_CONFIDENCE, PREVIEW_PREFIX_MAX, PREVIEW_TAIL


def _jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': 'u-81', 'iat': 1700000000})}.Qm9vZ3VzU2lnbmF0dXJlVmFsdWUxMjM0NTY"


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "MIIEowIBAAKCAQEAq1Wz8Kp3nVt0Rb7Xy2dQ9mLr4HcFjG6sTe1Ua5Zo0Nw3Yi7Bx\n" * 4
    + "-----END RSA PRIVATE KEY-----"
)

POSITIVES = [
    ("OPENAI_KEY", "sk-proj-Xq3vT9bLm2Pz8Rk4Wn7Yc1Hd6Jf0Gs5Qa2Ue8Io4Ly9Tb3Nc7Mx1Vz"),
    ("OPENAI_KEY", "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"),
    (
        "ANTHROPIC_KEY",
        "sk-ant-api03-"
        + "jSq6OMjv1syXaEUE0bvOckLe_GtCKy8lvZdko3eOJgV8TH-f2iyzRekyZNSby5d9ScikGYuqQhsrxML3X3N3rQ-XwQaQAA",
    ),
    ("AWS_ACCESS_KEY", "AKIA4QWERT7YUI2OPLKJ"),
    ("GITHUB_TOKEN", "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"),
    ("SLACK_TOKEN", "xoxb-262541194339-1293084920079-Z21cXgXdDdZDABIcrdG3D9OF"),
    ("JWT", _jwt()),
    ("GOOGLE_API_KEY", "AIzaSyB4sU8lU15bR_87qNb7eUVQN72_vv8mpbU"),
    ("STRIPE_KEY", "sk_live_dhhfUUyfrA9q5dBAZ10JrAD7"),
    ("GROQ_KEY", "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"),
    ("HUGGINGFACE_TOKEN", "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"),
    ("PRIVATE_KEY", PEM),
    ("NEWRELIC_KEY", "033f2f2072ca3f2cb2ec39024fa9e49cd640NRAL"),
]


@pytest.mark.parametrize(
    ("kind", "value"), POSITIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(POSITIVES)]
)
def test_each_kind_is_found_in_context_with_its_hash(kind: str, value: str) -> None:
    text = f"debug dump follows:\nCONFIG_VALUE={value}\nend of dump"
    matches = find_secrets(text)
    assert [m.kind for m in matches] == [kind]
    match = matches[0]
    assert text[match.start : match.end] == value
    assert match.hash == hashlib.sha256(value.encode()).hexdigest()
    assert match.confidence >= 0.7


def test_aws_secret_key_needs_its_context() -> None:
    secret = "0qk+o7XctJMmG6ydO8537c9+TofLJU1K0PiVBXSg"
    found = find_secrets(f'export AWS_SECRET_ACCESS_KEY="{secret}"')
    assert [(m.kind, m.confidence) for m in found] == [("AWS_SECRET_KEY", 0.85)]


@pytest.mark.parametrize(
    "text",
    [
        "The task-manager restarted; see risk-assessment-framework-document-version-two.",
        "sk-learn-compatible-estimator-wrapper-for-pipelines",
        "AKIA1234 is too short, A3T0ABCDEFGHIJKLMNO too",
        "ghp_short and github_pat_ are just prefixes",
        "xoxb- followed by nothing",
        "eyJhbGciOiJIUzI1NiJ9 alone is a header, not a token",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "AIza is a prefix; AIzaShort too",
        "pk_live_publishableKeyValue1234567 is public by design",
        "order 8d1c9a4e-2b7f-4d7e-9a51-2f0f3c9b6e11 shipped",
        "commit 3b335d612137949d2f21fcc6c8c8164db7603227 fixed it",
        "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "See https://docs.example.com/en/enterprise/3.0/authentication/keeping-your-account-secure",
        "getServerAddressByClientCIDRs and ServerAddressByClientCIDRs are identifiers",
        "password = request.form.get('password')",
        'export PGPASSWORD="$DB_PASSWORD"',
        "max_tokens: 1024, tokens_used: 98765432",
    ],
)
def test_look_alikes_are_not_reported(text: str) -> None:
    assert [m for m in find_secrets(text) if m.confidence >= 0.3] == []


@pytest.mark.parametrize(
    "text",
    [
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "OPENAI_API_KEY=sk-EXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLE12",
        'SLACK_TOKEN="xoxb-0000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx"',
        "api_key = <YOUR_KEY>",
        "api_key = xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "token: ${GITHUB_TOKEN}",
        "postgres://user:password@db.example.com/app",
    ],
)
def test_placeholders_get_no_match_or_a_clearly_low_confidence(text: str) -> None:
    assert all(m.confidence <= PLACEHOLDER_CONFIDENCE for m in find_secrets(text))


def test_generic_password_and_url_credentials() -> None:
    found = find_secrets(
        'db_password = "Tr0ub4dor&3x"\nDATABASE_URL=postgres://app:S3cr3tPa55w0rd@db.internal/app'
    )
    assert [(m.kind, m.confidence) for m in found] == [("PASSWORD", 0.5), ("URL_CREDENTIALS", 0.8)]


def test_high_entropy_is_low_confidence_and_keyword_raises_it() -> None:
    blob = "q8Zr3LmT0xVb7Yk2NwPf5HsJd9Gc4Ra1"
    bare = find_secrets(f"value {blob} seen")
    near = find_secrets(f"signing value {blob}".replace("signing value", "signature:"))
    assert [(m.kind, m.confidence) for m in bare] == [("HIGH_ENTROPY", 0.3)]
    assert [(m.kind, m.confidence) for m in near] == [("HIGH_ENTROPY", 0.45)]


def test_hex_only_counts_next_to_a_secret_keyword() -> None:
    hexkey = "951bc382db9abad29c68634761dd6e19"
    assert find_secrets(f"build id {hexkey}") == []
    assert [m.kind for m in find_secrets(f"secret {hexkey}")] == ["HIGH_ENTROPY"]


def test_overlaps_resolve_to_the_most_specific_match() -> None:
    text = "Authorization: Bearer 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"
    assert [m.kind for m in find_secrets(text)] == ["GITHUB_TOKEN"]


def _allowed_preview(match: SecretMatch) -> bool:
    head, sep, tail = match.preview.partition("…")
    return sep == "…" and len(head) <= PREVIEW_PREFIX_MAX and len(tail) <= PREVIEW_TAIL


@pytest.mark.parametrize(
    ("kind", "value"), POSITIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(POSITIVES)]
)
def test_previews_never_show_more_than_prefix_and_two_characters(kind: str, value: str) -> None:
    match = find_secrets(value)[0]
    assert _allowed_preview(match)
    assert match.preview.endswith(value[-2:])
    assert set(match.to_dict()) == {"kind", "hash", "preview", "confidence"}


def test_short_secret_previews_show_no_tail() -> None:
    (match,) = find_secrets('password = "hunter22x"')
    assert match.preview == "…"


def test_non_ascii_text_keeps_offsets_right() -> None:
    key = "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"
    # "İ" lowers to two code points; the Turkish dotless i is there on purpose.
    text = f"\u0130stanbul ekibi anahtar\u0131 payla\u015ft\u0131: {key} \u2713"
    (match,) = find_secrets(text)
    assert text[match.start : match.end] == key


@pytest.mark.parametrize(
    ("value", "confidence"),
    [
        ("$2a$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", 0.6),  # bcrypt
        ("$8$mTj4RZG8N9ZDOk$elY/asfm8kD3iDmkBe3hD2r4xcA/0oWS5V3os.O91u.", 0.6),  # Cisco type 8
        ("$9$nhEmQVczB7dqsO$X.HsgL6x1il0RxkOSSvyQYwucySCt7qFm4v7pqCxkKM", 0.6),  # Cisco type 9
        (  # Kerberos AS-REP, as roasting tools print it
            "$krb5asrep$23$svc-sql@corp.local:3e156ada591263b8aab0965f5aebd837$"
            "007497cb51b6c8116d6407a782ea0e1c5402b17db7afa6b05a6d30ed164a9933c754d720e279c6c5",
            0.8,
        ),
    ],
)
def test_password_hashes_are_found_whole(value: str, confidence: float) -> None:
    (match,) = find_secrets(f"hash: {value} (cracked later)")
    assert (match.kind, match.confidence) == ("PASSWORD_HASH", confidence)
    assert match.hash == hashlib.sha256(value.encode()).hexdigest()
    assert find_secrets("costs $8$ and $9$ each; $krb5asrep$23$ alone") == []


@pytest.mark.parametrize(
    "text",
    [
        "mvn sonar:sonar -Dsonar.login=5524bf449ca45fcace54698371466398321f3a82",
        "properties.put('sonar.login', '826de5590c75919a8317fdface58206eebe7ebbc')",
        '$sonarToken = "4924be8f51f3e738c97db2c4ace51db7e938f28b"',
    ],
)
def test_sonarqube_tokens_are_found_by_their_name(text: str) -> None:
    (match,) = find_secrets(text)
    assert (match.kind, match.confidence) == ("SONARQUBE_TOKEN", 0.8)
    assert find_secrets("sonar is 5524bf449ca45fcace54698371466398321f3a82") == []


def _b64_json(obj: dict[str, object]) -> str:
    return base64.b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode()


_AZDO = "Q7rT2vX9kL4mN8pB3cF6hJ1wZ5yA0dE2gH4jK6mP8sU0wYQ7rT2vJQQJ99BKACAAAAAx4mR9AAASAZDO7fQ2"


@pytest.mark.parametrize(
    ("text", "kind", "confidence"),
    [
        (f'azure_devops_pat = "{_AZDO}"', "AZURE_DEVOPS_PAT", 0.9),
        (
            'ADO_PAT: "k3v7qz2mwx5tjd4rnp6bhy2cgf7ls3ae5wq4uzo6xi2kvn7tr3pa"',
            "AZURE_DEVOPS_PAT",
            0.8,
        ),
        (
            "GrafanaClient('"
            + _b64_json({"k": "Zq8vN3xR7tL2mW9pK4cY6hB1dF5gJ0sA", "n": "ci", "id": 1})
            + "')",
            "GRAFANA_KEY",
            0.85,
        ),
        (
            "POST https://thingsboard.cloud/api/v1/a8Kq2Zx7Lm4Pw9Rt3Yv6/telemetry",
            "THINGSBOARD_TOKEN",
            0.8,
        ),
        (
            "sf session 00DQ7rT2vX9kL4m!AQ8AQ"
            + "Xq3vT9bLm2Pz8Rk4Wn7Yc1Hd6Jf0Gs5Qa2Ue8Io4Ly9Tb3N" * 2,
            "SALESFORCE_TOKEN",
            0.85,
        ),
        (
            "CC_TEST_REPORTER_ID: 7d1c9a4e2b7f4d7e9a512f0f3c9b6e11e3b0c44298fc1c149afbf4c8996fb924",
            "CODECLIMATE_TOKEN",
            0.75,
        ),
        (
            "access token sgp_local_5f3c9b6e11e3b0c44298fc1c149afbf4c8996fb9",
            "SOURCEGRAPH_TOKEN",
            0.95,
        ),
    ],
)
def test_vendor_formats_found_whole(text: str, kind: str, confidence: float) -> None:
    (match,) = find_secrets(text)
    assert (match.kind, match.confidence) == (kind, confidence)
    assert text[match.end :].startswith(("", '"', "'", "/")) and match.end - match.start >= 20


@pytest.mark.parametrize(
    "text",
    [
        # a Power BI report link: base64 of {"k":…} too, without a key's "n" and "id"
        "https://app.powerbi.com/view?r="
        + _b64_json({"k": "a6c197b1-348b-4529-8ad2-6e20de9900de", "t": "72f988bf", "c": 5}),
        _AZDO + "Z",  # 85 characters: not the format
        # the older 52-character base32 format, only when an Azure DevOps name gives it
        "checksum = k3v7qz2mwx5tjd4rnp6bhy2cgf7ls3ae5wq4uzo6xi2kvn7tr3pa",
        "ado_pat = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",  # not random
        "shadow_pat = k3v7qz2mwx5tjd4rnp6bhy2cgf7ls3ae5wq4uzo6xi2kvn7tr3pa",
        "https://thingsboard.cloud/api/v1/devices/telemetry",
        "org id 00D5f000000ABCDEAQ is an identifier",
        "CC_TEST_REPORTER_ID: 3b335d612137949d2f21fcc6c8c8164db7603227",
    ],
)
def test_vendor_format_look_alikes_are_not_reported(text: str) -> None:
    assert [m.kind for m in find_secrets(text) if m.confidence >= 0.5] == []
