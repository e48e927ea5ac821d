"""The language parser against random unicode, 10,000-character strings, non-UTF-8 bytes
decoded with errors, whitespace and control characters: it always answers with an Intent
(never raises), refuses over-long and empty input, and never lets an acting intent through
below the motion threshold. With and without the MiniLM fallback (the node runs with it)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from fluorosam_ros.language.parser import CommandParser, ParserConfig
from fluorosam_ros.reliability import REFUSED
from fluorosam_ros.reliability import fuzz


@pytest.fixture(scope="module")
def grammar_parser():
    return CommandParser(config=ParserConfig(use_embeddings=False))


@pytest.fixture(scope="module")
def full_parser():
    parser = CommandParser(config=ParserConfig())
    parser.warm_up()
    return parser


@settings(max_examples=300)
@given(fuzz.odd_texts())
def test_grammar_parser_answers_every_odd_text(ledger, grammar_parser, case):
    assert fuzz.check_text(ledger, grammar_parser, case) == REFUSED, ledger.problems()


@settings(max_examples=60)
@given(fuzz.odd_texts())
def test_parser_with_the_embedding_fallback_answers_every_odd_text(ledger, full_parser, case):
    assert fuzz.check_text(ledger, full_parser, case) == REFUSED, ledger.problems()


@pytest.mark.parametrize("raw", [b"\xff\xfe\xfd", b"show the \xe9\xe9 heart", b"\xed\xa0\x80stop", b"\x00\x00"])
@pytest.mark.parametrize("errors", ["replace", "surrogateescape", "ignore"])
def test_non_utf8_bytes_never_raise(full_parser, raw, errors):
    intent = full_parser.parse(raw.decode("utf-8", errors=errors))
    assert intent.kind in ("not_understood", "stop", "show", "where")
