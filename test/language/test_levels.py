"""Levels named relative to another (language/levels.py), through the vocabulary's span finder."""

import pytest

from fluorosam_ros.language.levels import UNANCHORED, RelativeLevels
from fluorosam_ros.language.parser import CommandParser, ParserConfig


@pytest.fixture(scope="module")
def parser() -> CommandParser:
    return CommandParser(config=ParserConfig(use_embeddings=False))


@pytest.mark.parametrize("joined, rewritten", [
    ("show 1 level up from l4", "show l3"),
    ("show the level above t1", "show c7"),                      # across regions
    ("show the vertebra just below l5 lateral", "show s1 lateral"),
    ("2 levels below t11", "l1"),
    ("show the rib under the left 5th", "show left 6th rib"),
    ("1 rib above the right 1st rib", "1 rib above the right 1st rib"),     # no rib 0: unchanged
    ("show the level above c1", "show the level above c1"),                 # past the top: unchanged
    ("show the level above the liver", "show the level above the liver"),   # no numbered anchor
    ("move up 5 mm", "move up 5 mm"),
])
def test_rewrite(parser: CommandParser, joined: str, rewritten: str) -> None:
    assert parser.levels.rewrite(joined, parser._find_structure) == rewritten


def test_the_column_runs_from_c1_to_s1(parser: CommandParser) -> None:
    levels = RelativeLevels(parser.vocabulary)
    assert levels.column[0] == "vertebrae_C1" and levels.column[-1] == "vertebrae_S1"
    assert levels.column.index("vertebrae_T1") == levels.column.index("vertebrae_C7") + 1
    assert len(levels.ribs) == 24


@pytest.mark.parametrize("joined, anchored", [
    ("go up a level", False), ("1 level down", False), ("next level up", False),
    ("move up a bit", True), ("the level is fine", True),
])
def test_a_level_without_an_anchor_is_found(joined: str, anchored: bool) -> None:
    assert (UNANCHORED.search(joined) is None) == anchored
