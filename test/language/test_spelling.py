"""Typing slips in typed commands (fluorosam_ros/language/spelling.py)."""

from __future__ import annotations

import pytest

from fluorosam_ros.language.spelling import TypoCorrector, english_words, slips

COMMAND_WORDS = ("show", "rotate", "out", "collimate", "tilt", "left", "let", "femur", "vertebra", "shot")


@pytest.mark.parametrize("a, b, expected", [
    ("show", "show", 0), ("shwo", "show", 1), ("rotaet", "rotate", 1), ("otu", "out", 1),
    ("colimate", "collimate", 1), ("vertabra", "vertebra", 1), ("abc", "xyz", 3),
])
def test_slips_counts_edits_and_swapped_neighbours(a: str, b: str, expected: int) -> None:
    assert slips(a, b, limit=3) == expected


def test_slips_stops_early_past_its_limit() -> None:
    assert slips("abcdefgh", "zzzzzzzz", limit=1) == 2


def test_one_slip_from_one_command_word_is_corrected() -> None:
    corrector = TypoCorrector(COMMAND_WORDS, english_words=("shut", "door", "the"))
    assert corrector.correct("shwo the femr".split()) == ["show", "the", "femur"]
    assert corrector.correct(["rotaet", "otu", "colimate"]) == ["rotate", "out", "collimate"]


def test_real_words_and_ties_are_left_alone() -> None:
    corrector = TypoCorrector(COMMAND_WORDS, english_words=("shut", "door", "the"))
    assert corrector.correct(["shut", "the", "door"]) == ["shut", "the", "door"]   # "shut" is English
    assert corrector.correct(["lfet"]) == ["lfet"]           # one slip from both "left" and "let"
    assert corrector.correct(["xq", "12", "zzzzz"]) == ["xq", "12", "zzzzz"]


def test_the_english_dictionary_is_pocketsphinxs() -> None:
    words = english_words()
    assert len(words) > 100_000
    assert {"shut", "door", "show"} <= words and "shwo" not in words


def test_spelled_letters_join_only_into_known_words():
    from fluorosam_ros.language.spelling import join_spelled_letters
    known = {"ivc", "lul", "ap", "pa", "gi"}
    assert join_spelled_letters("show the i v c".split(), known) == ["show", "the", "ivc"]
    assert join_spelled_letters("take a p a view".split(), known) == ["take", "a", "pa", "view"]
    assert join_spelled_letters("give me an a p".split(), known) == ["give", "me", "an", "ap"]
    assert join_spelled_letters("i m here".split(), known) == ["i", "m", "here"]


def test_without_an_english_dictionary_nothing_is_corrected():
    corrector = TypoCorrector(COMMAND_WORDS, english_words=())
    assert corrector.correct(["shwo", "shut"]) == ["shwo", "shut"]


def test_two_command_words_typed_without_a_space_are_split() -> None:
    corrector = TypoCorrector(COMMAND_WORDS + ("me", "is", "where", "move"), english_words=("nowhere", "the"))
    assert corrector.correct(["showme", "the", "femur"]) == ["show", "me", "the", "femur"]
    assert corrector.correct(["moveleft"]) == ["move", "left"]
    assert corrector.correct(["whereis"]) == ["where", "is"]
    assert corrector.correct(["nowhere"]) == ["nowhere"]            # English: left alone
    assert corrector.correct(["showfemr"]) == ["showfemr"]          # one half is no command word
