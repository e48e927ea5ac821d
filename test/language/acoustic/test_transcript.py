"""The acoustic model's alphabet and the spoken form of training text."""

from __future__ import annotations

import pytest
import torch

from fluorosam_ros.language.acoustic.transcript import ALPHABET, collapse, encode, number_words, spoken_transcript
from fluorosam_ros.language.parser import CommandParser, ParserConfig


@pytest.mark.parametrize("value, words", [(0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"),
                                          (95, "ninety five"), (100, "one hundred"), (125, "one hundred twenty five")])
def test_number_words(value, words):
    assert number_words(value) == words


def test_number_words_refuses_out_of_range():
    with pytest.raises(ValueError):
        number_words(1000)


@pytest.mark.parametrize("text, spoken", [
    ("Collimate to L3!", "collimate to l three"),
    ("rotate 30 degrees", "rotate thirty degrees"),
    ("tilt 2.5 degrees", "tilt two point five degrees"),
    ("show the T12, please", "show the t twelve please"),
    ("don't move", "don't move"),
    ("x-ray the C-arm", "x ray the c arm"),
])
def test_spoken_transcript(text, spoken):
    assert spoken_transcript(text) == spoken
    assert set(spoken) <= set(ALPHABET[1:])


def test_spoken_levels_are_read_back_by_the_parser():
    parser = CommandParser(config=ParserConfig(use_embeddings=False))
    for text, structure in (("show me L3", "vertebrae_L3"), ("show me T12", "vertebrae_T12"),
                            ("show me C7", "vertebrae_C7")):
        intent = parser.parse(spoken_transcript(text))
        assert intent.slots().get("structure") == structure, (text, spoken_transcript(text), intent.describe())


def test_encode_and_collapse_round_trip():
    labels = encode("all stop")
    # best path with repeats and blanks: "aa_ll_l" -> the doubled l needs the blank between
    path = [labels[0], labels[0], 0, labels[1], 0, labels[2], labels[3]] + labels[3:].tolist()
    assert collapse(path) == "all stop"
    assert collapse(torch.tensor([labels[1], labels[1]])) == "l"      # no blank: one letter


def test_encode_refuses_characters_outside_the_alphabet():
    with pytest.raises(ValueError, match="outside"):
        encode("l3")
