"""The detectors' small helpers, held to their plain definitions."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from cogumi.detect.heuristics import char_classes

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
