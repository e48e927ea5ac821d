"""Typed clauses around one request (language/clauses.py)."""

import pytest

from fluorosam_ros.language.clauses import changes_meaning, may_stand_alone, split_clauses


def test_split_at_punctuation_and_so_but_not_in_a_number() -> None:
    assert split_clauses("the cement is going in now, so give me a lateral of T11") == \
        ["the cement is going in now", "give me a lateral of T11"]
    assert split_clauses("move left 2.5 mm") == ["move left 2.5 mm"]
    assert split_clauses("this is L5; now: show me S1!") == ["this is L5", "now", "show me S1"]


@pytest.mark.parametrize("clause, changes", [
    ("for the students watching", False),
    ("I can't see the endplates", False),          # the reason for a request
    ("not yet", True), ("he said", True), ("if it looks clear", True), ("it'll last longer", True),
    ("I dropped the wire", True),                 # something that happened
    ("out a bit", False), ("zoom", True),         # a command word: part of the request
])
def test_changes_meaning(clause: str, changes: bool) -> None:
    assert changes_meaning(clause) == changes


def test_a_one_word_request_stands_alone_only_last() -> None:
    assert may_stand_alone(["hands out of the field", "shoot"], 1)
    assert not may_stand_alone(["shoot", "I dropped the wire"], 0)
    assert may_stand_alone(["give me a lateral", "thanks"], 0)
