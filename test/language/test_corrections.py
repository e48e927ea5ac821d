"""Self-corrections inside one utterance (fluorosam_ros/language/corrections.py)."""

from __future__ import annotations

import pytest

from fluorosam_ros.language.corrections import apply_corrections
from fluorosam_ros.language.numbers import normalize_command
from fluorosam_ros.language.vocabulary import default_vocabulary


class _Span:
    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end


def find_structure(tokens: list[str]) -> _Span | None:
    """The longest span the real vocabulary resolves (enough for these tests)."""
    vocabulary = default_vocabulary()
    for length in range(min(4, len(tokens)), 0, -1):
        for start in range(len(tokens) - length + 1):
            if tokens[start] not in ("the", "a", "to") and vocabulary.resolve(" ".join(tokens[start:start + length])):
                return _Span(start, start + length)
    return None


def corrected(text: str) -> str:
    return " ".join(apply_corrections(normalize_command(text), find_structure))


@pytest.mark.parametrize("said, meant", [
    ("show me the left, no, right femur", "show me the right femur"),
    ("L4, sorry, L5, lateral", "l 5 lateral"),
    ("rotate twenty, no, thirty degrees left", "rotate 30 degrees left"),
    ("move left, sorry, right, five millimetres", "move right 5 millimetres"),
    ("tilt cranial, um, caudal, ten degrees", "tilt caudal 10 degrees"),
    ("zoom in, no, zoom out", "zoom out"),
    ("show the right hip, wait, the left one", "show the left hip"),
    ("show the liver, sorry, the spleen", "show the spleen"),
    ("go up two, uh, three centimetres", "go up 3 centimetres"),
    ("move left 5 mm, I mean 10 mm", "move left 10 mm"),
])
def test_the_words_after_a_correction_replace_the_same_kind_before_it(said: str, meant: str) -> None:
    assert corrected(said) == meant


@pytest.mark.parametrize("said", [
    "no, don't move",                   # a negation, nothing taken back
    "no rush, show the femur",
    "move left, no",                    # nothing after the marker
    "rotate twenty uh five degrees",    # twenty-five, or a correction: left alone
    "uh show the femur",                # a pause, not a correction
    "move left uh 5 mm",                # a pause between two different kinds
    "show the femur, no, wait",
])
def test_a_marker_without_the_same_kind_on_both_sides_changes_nothing(said: str) -> None:
    assert corrected(said) == " ".join(normalize_command(said))
