"""The one-search anchor pre-filter for short texts changes no result: on every
example of the Nosey Parker set (and on header-like strings) scan_all finds
exactly what the rule-by-rule scan finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cogumi.detect import secrets

DATASET = Path(__file__).parents[3] / "shared" / "datasets" / "noseyparker-secret-examples"

HEADER_LIKE = [
    "127.0.0.1:8080", "text/plain", "keep-alive", "application/json; charset=utf-8",
    "Bearer sk-proj-Q7rT2vX9kL4mN8pB3cF6hJ1wZ5yA0dE2gH4jK6mP8sU0wY", "gzip, deflate",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "/v1/chat/completions?api_key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "x" * 128,
]  # fmt: skip


def texts() -> list[str]:
    lines = (DATASET / "secret_examples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines] + HEADER_LIKE


def test_prefilter_changes_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = texts()
    assert sum(len(t) <= secrets.SHORT_TEXT for t in samples) > 300, "the short path is exercised"
    fast = [secrets.scan_all(t) for t in samples]
    monkeypatch.setattr(secrets, "SHORT_TEXT", -1)  # every text takes the rule-by-rule path
    assert fast == [secrets.scan_all(t) for t in samples]
    assert sum(map(len, fast)) > 200, "and the set has plenty of hits to compare"
