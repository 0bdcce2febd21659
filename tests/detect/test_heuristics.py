"""The detectors' small helpers, held to their plain definitions."""

from __future__ import annotations

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from cogumi.detect.entropy import _TOKEN, token_spans
from cogumi.detect.heuristics import char_classes
from tests.datasets import dataset
from tests.detect.test_redact import NOSEY_PARKER

_CLASSES = (set(string.ascii_lowercase), set(string.ascii_uppercase), set(string.digits))


def plain_char_classes(value: str) -> int:
    return sum(bool(cls & set(value)) for cls in _CLASSES)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=string.printable, max_size=300) | st.text(max_size=60))
def test_char_classes_counts_ascii_lower_upper_and_digits(value: str) -> None:
    assert char_classes(value) == plain_char_classes(value)


def test_char_classes_on_long_tokens_and_non_ascii_letters() -> None:
    for value, expected in [("x" * 1024, 1), ("x" * 1023 + "Q", 2), ("7" + "x" * 1023 + "Q", 3),
                            ("ÉÉ éé", 0), ("Éa1", 2), ("+/_-=", 0), ("", 0)]:  # fmt: skip
        assert char_classes(value) == expected == plain_char_classes(value), value


_TOKENISH = st.text(alphabet="aZ9+/_-", min_size=1, max_size=30)
_BETWEEN = st.text(alphabet="= .\n\t\"'é…😀:[]x", max_size=4)


_PADS = st.sampled_from(["", "", "=", "==", "===", "===="])


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(st.tuples(_TOKENISH, _PADS, _BETWEEN), max_size=12) | st.just([]),
    st.text(max_size=40),
)
def test_token_spans_are_the_token_patterns_matches(
    parts: list[tuple[str, str, str]], tail: str
) -> None:
    """Runs of token characters of every length around the 20 the pattern wants,
    with zero to four ``=`` pads, other ASCII and characters outside ASCII between
    them."""
    text = "".join(a + pads + b for a, pads, b in parts) + tail
    assert list(token_spans(text)) == [m.span() for m in _TOKEN.finditer(text)]


def test_token_spans_on_the_secret_examples() -> None:
    lines = (dataset(NOSEY_PARKER) / "secret_examples.jsonl").read_text("utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    for text in [*texts, "\n".join(texts)]:
        assert list(token_spans(text)) == [m.span() for m in _TOKEN.finditer(text)]
