"""The one-pass anchor search (Aho-Corasick) changes no result: on every example
of the Nosey Parker set, on header-like strings and on long bodies made of those
examples, scan_all finds exactly what running each rule from every place
``str.find`` finds one of its anchors finds."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cogumi.detect import secrets
from cogumi.detect.credentials import credential_spans
from cogumi.detect.match import SecretMatch
from cogumi.detect.redact import scan_and_credentials
from cogumi.detect.rules import RULES
from tests.datasets import dataset

NOSEY_PARKER = "noseyparker-secret-examples"  # as bench/detect_eval.py

HEADER_LIKE = [
    "127.0.0.1:8080", "text/plain", "keep-alive", "application/json; charset=utf-8",
    "Bearer sk-proj-Q7rT2vX9kL4mN8pB3cF6hJ1wZ5yA0dE2gH4jK6mP8sU0wY", "gzip, deflate",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "/v1/chat/completions?api_key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "x" * 1024,
    "ÉTÉ İstanbul ǅ sk-ant-api03-" + "Ab1" * 30,  # lowering that changes lengths
]  # fmt: skip


def reference_scan(text: str) -> list[SecretMatch]:
    low = secrets.lower_same_length(text)
    hits: list[SecretMatch] = []
    for rule in RULES:
        found: set[int] = set()
        for anchor in rule.anchors:
            pos = low.find(anchor)
            while pos != -1:
                found.add(pos)
                pos = low.find(anchor, pos + 1)
        if found:
            hits.extend(secrets._rule_hits(rule, text, sorted(found)))
    hits.extend(secrets._structural_hits(text))
    return hits


def samples() -> list[str]:
    jsonl = dataset(NOSEY_PARKER) / "secret_examples.jsonl"
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    examples = [json.loads(line)["text"] for line in lines]
    bodies = ["\n".join(examples[i : i + 40]) for i in range(0, len(examples), 40)]
    return examples + HEADER_LIKE + bodies


def test_one_pass_anchor_search_changes_no_result() -> None:
    texts = samples()
    found = [secrets.scan_all(t) for t in texts]
    assert found == [reference_scan(t) for t in texts]
    assert sum(map(len, found)) > 300, "the set has plenty of hits to compare"
    assert max(map(len, texts)) > 2000, "and long bodies as well as short strings"


def test_one_pass_for_rules_and_credentials_changes_no_result() -> None:
    """Redaction finds the rules' anchors and the credential patterns' start words in
    one pass (scan_and_credentials): the same hits and spans as the two scans."""
    texts = samples()
    both = [scan_and_credentials(t) for t in texts]
    assert both == [(secrets.scan_all(t), credential_spans(t)) for t in texts]
    assert sum(len(spans) for _, spans in both) > 100


_PIECES = [*HEADER_LIKE[:6], "password = 'hunter22'", "api_key: x", "-p pw", "ÉTÉ", "\n", " "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=12), max_size=8))
def test_one_pass_on_generated_text(parts: list[str]) -> None:
    text = "".join(parts)
    assert scan_and_credentials(text) == (secrets.scan_all(text), credential_spans(text))
