"""Measure the secret detector: precision/recall on labelled examples, and scan speed.

Usage: python bench/detect_eval.py [--dataset PATH] [--skip-alternatives]

Prints one JSON document: per-kind precision/recall/support for the kinds with
a distinctive format, a binary "is there a secret here" score at the two
confidence levels consumers use (0.3 = reported, 0.5 = alarm), and the same
binary score and speed for detect-secrets and CredSweeper when they are
installed (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _datasets import datasets_dir

from cogumi.detect import find_secrets, redact_text

DEFAULT_DATASET = datasets_dir() / "noseyparker-secret-examples" / "secret_examples.jsonl"

KIND_OF_RULE: dict[str, set[str]] = {
    "OpenAI API Key": {"OPENAI_KEY"},
    "Anthropic API Key": {"ANTHROPIC_KEY"},
    "Groq API Key": {"GROQ_KEY"},
    "HuggingFace User Access Token": {"HUGGINGFACE_TOKEN"},
    "Tavily API Key": {"TAVILY_KEY"},
    "AWS API Key": {"AWS_ACCESS_KEY"},
    "AWS API Credentials": {"AWS_ACCESS_KEY", "AWS_SECRET_KEY"},
    "AWS Secret Access Key": {"AWS_SECRET_KEY"},
    "GitHub Personal Access Token": {"GITHUB_TOKEN"},
    "GitHub OAuth Access Token": {"GITHUB_TOKEN"},
    "GitHub App Token": {"GITHUB_TOKEN"},
    "GitHub Refresh Token": {"GITHUB_TOKEN"},
    "GitHub Personal Access Token (fine-grained permissions)": {"GITHUB_TOKEN"},
    "GitLab Personal Access Token": {"GITLAB_TOKEN"},
    "GitLab Pipeline Trigger Token": {"GITLAB_TOKEN"},
    "GitLab Runner Registration Token": {"GITLAB_TOKEN"},
    "Slack Bot Token": {"SLACK_TOKEN"},
    "Slack User Token": {"SLACK_TOKEN"},
    "Slack App Token": {"SLACK_TOKEN"},
    "Slack Legacy Bot Token": {"SLACK_TOKEN"},
    "Slack Webhook": {"SLACK_WEBHOOK"},
    "PEM-Encoded Private Key": {"PRIVATE_KEY"},
    "Base64-PEM-Encoded Private Key": {"PRIVATE_KEY"},
    "JSON Web Token (base64url-encoded)": {"JWT"},
    "Google API Key": {"GOOGLE_API_KEY"},
    "Google OAuth Access Token": {"GOOGLE_OAUTH_TOKEN"},
    "Stripe API Key": {"STRIPE_KEY"},
    "Stripe API Test Key": {"STRIPE_KEY"},
    "SendGrid API Key": {"SENDGRID_KEY"},
    "NPM Access Token (fine-grained)": {"NPM_TOKEN"},
    "PyPI Upload Token": {"PYPI_TOKEN"},
    "Docker Hub Personal Access Token": {"DOCKERHUB_TOKEN"},
    "DigitalOcean Application Access Token": {"DIGITALOCEAN_TOKEN"},
    "DigitalOcean Personal Access Token": {"DIGITALOCEAN_TOKEN"},
    "DigitalOcean Refresh Token": {"DIGITALOCEAN_TOKEN"},
    "Databricks Personal Access Token": {"DATABRICKS_TOKEN"},
    "Shopify Access Token (Custom App)": {"SHOPIFY_TOKEN"},
    "Shopify Access Token (Legacy Private App)": {"SHOPIFY_TOKEN"},
    "Shopify Access Token (Public App)": {"SHOPIFY_TOKEN"},
    "Shopify App Secret": {"SHOPIFY_TOKEN"},
    "Credentials in MongoDB Connection String": {"URL_CREDENTIALS"},
    "Credentials in PostgreSQL Connection URI": {"URL_CREDENTIALS"},
    "Microsoft Teams Webhook": {"TEAMS_WEBHOOK"},
    "Twitch Stream Key": {"TWITCH_STREAM_KEY"},
    "Azure DevOps Personal Access Token": {"AZURE_DEVOPS_PAT"},
    "Grafana API Token": {"GRAFANA_KEY"},
    "ThingsBoard Access Token": {"THINGSBOARD_TOKEN"},
    "Salesforce Access Token": {"SALESFORCE_TOKEN"},
    "CodeClimate Reporter ID": {"CODECLIMATE_TOKEN"},
    "Sourcegraph Access Token": {"SOURCEGRAPH_TOKEN"},
}
"""Nosey Parker rule name -> the kinds this detector should report for its positives."""

EXTRA_KINDS: dict[tuple[str, int, int], set[str]] = {
    # (rule_id, label, example_index), reviewed by hand: rows that really contain
    # a credential of this kind although they belong to another rule or are
    # that rule's negative.
    ("np.aws.4", 1, 0): {"AWS_SECRET_KEY", "JWT"},
    ("np.aws.5", 1, 0): {"AWS_ACCESS_KEY"},
    ("np.bitbucket.1", 1, 0): {"URL_CREDENTIALS"},
    ("np.slack.2", 0, 0): {"SLACK_TOKEN"},
    ("np.slack.2", 0, 1): {"SLACK_TOKEN"},
    ("np.slack.2", 0, 2): {"SLACK_TOKEN"},
    ("np.slack.4", 0, 0): {"SLACK_TOKEN"},
    ("np.slack.4", 0, 1): {"SLACK_TOKEN"},
    ("np.slack.4", 0, 2): {"SLACK_TOKEN"},
    ("np.slack.6", 0, 0): {"SLACK_TOKEN"},
    ("np.slack.6", 0, 1): {"SLACK_TOKEN"},
    ("np.slack.6", 0, 2): {"SLACK_TOKEN"},
    ("np.slack.6", 0, 3): {"SLACK_TOKEN"},
    ("np.mongodb.1", 0, 0): {"URL_CREDENTIALS"},
}

NEGATIVES_WITH_SECRETS: dict[tuple[str, int], str] = {
    # (rule_id, example_index) of negatives of one rule that still hold a credential (another type, or the
    # same value without the context that rule wants); reviewed by hand and
    # left out of the binary "no secret here" set.
    ("np.auth0.1", 0): "Auth0 client secret",
    ("np.aws.2", 0): "42-hex secret assigned to AWS_SECRET_ACCESS_KEY",
    ("np.azure.4", 2): "token-shaped value, no context",
    ("np.azure.4", 3): "token-shaped value, no context",
    ("np.dtrack.1", 0): "token-shaped value, no context",
    ("np.dtrack.1", 2): "token-shaped value, no context",
    ("np.facebook.1", 0): "32-hex key in serialized config",
    ("np.generic.1", 0): "Azure AD client secret",
    ("np.generic.1", 2): "LDAP password in prose",
    ("np.generic.4", 0): "password literal",
    ("np.generic.5", 1): "password literal",
    ("np.generic.5", 2): "password literal",
    ("np.generic.9", 0): "password in a connection string",
    ("np.generic.9", 1): "token stored as a password",
    ("np.generic.10", 0): "email password",
    ("np.gitalk.1", 0): "OAuth client secret",
    ("np.gitalk.1", 1): "OAuth client secret",
    ("np.hashicorp.1", 0): "Vault token",
    ("np.hashicorp.2", 0): "Vault token",
    ("np.hashicorp.2", 2): "Vault batch token",
    ("np.hashicorp.3", 0): "Vault token",
    ("np.hashicorp.4", 0): "Vault token",
    ("np.hashicorp.5", 0): "Vault token",
    ("np.hashicorp.6", 0): "Vault token",
    ("np.jwt.1", 1): "token stored as a password",
    ("np.kagi.1", 0): "token-shaped value, no context",
    ("np.kagi.1", 1): "token-shaped value, no context",
    ("np.kagi.1", 2): "token-shaped value, no context",
    ("np.msteams.1", 0): "partial webhook URL",
    ("np.mongodb.1", 0): "password in a connection string",
    ("np.newrelic.2", 0): "New Relic license key",
    ("np.npm.1", 0): "legacy (UUID) npm token",
    ("np.odbc.1", 3): "default password literal",
    ("np.slack.2", 0): "Slack token",
    ("np.slack.2", 1): "Slack token",
    ("np.slack.2", 2): "Slack token",
    ("np.slack.4", 0): "Slack token",
    ("np.slack.4", 1): "Slack token",
    ("np.slack.4", 2): "Slack token",
    ("np.slack.6", 0): "Slack token",
    ("np.slack.6", 1): "Slack token",
    ("np.slack.6", 2): "Slack token",
    ("np.slack.6", 3): "Slack token",
    ("np.twitch.1", 0): "stream key",
    ("np.twitch.1", 1): "stream key",
    ("np.twitter.2", 0): "Twitter OAuth secrets",
}

TYPICAL_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful support agent for Acme. " * 6},
            {
                "role": "user",
                "content": "Hi, my order 8d1c9a4e-2b7f-4d7e-9a51-2f0f3c9b6e11 never arrived. "
                "Tracking says https://track.example.com/p/1Z999AA10123456784 was delivered. " * 4,
            },
            {
                "role": "assistant",
                "content": "Let me check. I called the orders tool with "
                "Authorization: Bearer sk-proj-Xq3vT9bLm2Pz8Rk4Wn7Yc1Hd6Jf0Gs5Qa2Ue8Io4Ly9Tb3Nc7Mx1Vz "
                "and it returned status=shipped, carrier=UPS. " * 3,
            },
        ],
        "temperature": 0.2,
        "max_tokens": 512,
    }
)[:2048]


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _key(row: dict[str, Any]) -> tuple[str, int]:
    return (row["rule_id"], row["example_index"])


def expected_kinds(row: dict[str, Any]) -> set[str]:
    kinds = set(KIND_OF_RULE.get(row["rule_name"], set())) if row["label"] == 1 else set()
    return kinds | EXTRA_KINDS.get((row["rule_id"], row["label"], row["example_index"]), set())


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def per_kind(
    rows: list[dict[str, Any]], predicted: list[dict[str, float]], threshold: float
) -> dict[str, Any]:
    """Precision/recall per kind among the kinds with a distinctive format."""
    kinds = sorted({k for ks in KIND_OF_RULE.values() for k in ks})
    out: dict[str, Any] = {}
    for kind in kinds:
        tp = fp = fn = 0
        for row, pred in zip(rows, predicted, strict=True):
            hit = pred.get(kind, 0.0) >= threshold
            want = kind in expected_kinds(row)
            tp += hit and want
            fp += hit and not want
            fn += want and not hit
        out[kind] = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "support": tp + fn,
        }
    return out


def binary_sets(rows: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Row indexes that must raise an alarm, and reviewed-clean ones that must not."""
    positives = [i for i, r in enumerate(rows) if r["label"] == 1 and "secret" in r["categories"]]
    negatives = [
        i for i, r in enumerate(rows) if r["label"] == 0 and _key(r) not in NEGATIVES_WITH_SECRETS
    ]
    return positives, negatives


def binary(flags: list[bool], positives: list[int], negatives: list[int]) -> dict[str, Any]:
    tp = sum(flags[i] for i in positives)
    fp = sum(flags[i] for i in negatives)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, len(positives)),
        "false_positives": fp,
        "positives": len(positives),
        "clean_negatives": len(negatives),
    }


def timing(scan: Callable[[str], object], texts: list[str], body: str) -> dict[str, float]:
    """µs per typical 2 KB body (median of runs) and MB/s over the whole dataset."""
    scan(body)
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(50):
            scan(body)
        runs.append((time.perf_counter() - start) / 50)
    runs.sort()
    start = time.perf_counter()
    for text in texts:
        scan(text)
    elapsed = time.perf_counter() - start
    size = sum(len(t.encode("utf-8")) for t in texts)
    return {"us_per_2kb_body": round(runs[3] * 1e6, 1), "mb_per_s": round(size / elapsed / 1e6, 2)}


def cpu_calibration_ms() -> float:
    """A fixed pure-Python workload, so figures from a busy or slow machine can be compared."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        sum(range(1_000_000))
        runs.append(time.perf_counter() - start)
    return round(min(runs) * 1e3, 2)


def cogumi_scan(text: str) -> dict[str, float]:
    best: dict[str, float] = {}
    for m in find_secrets(text):
        best[m.kind] = max(best.get(m.kind, 0.0), m.confidence)
    return best


def detect_secrets_scanner() -> Callable[[str], bool] | None:
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        return None
    context = default_settings()
    context.__enter__()  # settings stay active for the whole benchmark

    def scan(text: str, _keep: object = context) -> bool:
        # _keep holds the settings context: once collected, it would reset the plugins.
        return any(True for line in text.splitlines() for _ in scan_line(line))

    return scan


def credsweeper_scanner() -> Callable[[str], bool] | None:
    try:
        from credsweeper.app import CredSweeper
        from credsweeper.file_handler.string_content_provider import StringContentProvider
    except ImportError:
        return None
    sweeper = CredSweeper()

    def scan(text: str) -> bool:
        candidates = sweeper.file_scan(StringContentProvider(text.splitlines()))
        sweeper.credential_manager.set_credentials(candidates)
        sweeper.post_processing(None)
        found = bool(sweeper.credential_manager.get_credentials())
        sweeper.credential_manager.set_credentials([])
        return found

    return scan


def redaction(texts: list[str], positives: list[int]) -> dict[str, Any]:
    """What redaction leaves: positive examples it masks nothing in (matches and
    credentials given by name both count), and examples of any label it masks something
    in (a mask on a clean one costs readability, never a leak)."""
    masked = ["[REDACTED:" in redact_text(t)[0] for t in texts]
    return {
        "positives_left_unmasked": sum(not masked[i] for i in positives),
        "positives": len(positives),
        "examples_masked": sum(masked),
        "examples": len(texts),
        "speed": timing(lambda t: redact_text(t)[0], texts, TYPICAL_BODY),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--skip-alternatives", action="store_true")
    args = parser.parse_args()
    rows = load(args.dataset)
    texts = [r["text"] for r in rows]
    positives, negatives = binary_sets(rows)
    predicted = [cogumi_scan(t) for t in texts]
    result: dict[str, Any] = {
        "dataset": {"path": str(args.dataset), "rows": len(rows)},
        "cpu_calibration_ms": cpu_calibration_ms(),
        "cogumi": {
            "per_kind_at_0.5": per_kind(rows, predicted, 0.5),
            "binary_at_0.3": binary(
                [max(p.values(), default=0) >= 0.3 for p in predicted], positives, negatives
            ),
            "binary_at_0.5": binary(
                [max(p.values(), default=0) >= 0.5 for p in predicted], positives, negatives
            ),
            "speed": timing(find_secrets, texts, TYPICAL_BODY),
            "redaction": redaction(texts, positives),
        },
    }
    if not args.skip_alternatives:
        for name, factory in (
            ("detect-secrets", detect_secrets_scanner),
            ("credsweeper", credsweeper_scanner),
        ):
            started = time.perf_counter()
            scanner = factory()
            if scanner is None:
                result[name] = {"installed": False}
                continue
            setup = time.perf_counter() - started
            flags = [scanner(t) for t in texts]
            result[name] = {
                "binary_any_finding": binary(flags, positives, negatives),
                "speed": timing(scanner, texts, TYPICAL_BODY),
                "setup_s": round(setup, 2),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
