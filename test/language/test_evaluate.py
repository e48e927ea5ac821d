"""The evaluation set and the text evaluation (the speech table is `fluorosam evaluate-language`)."""

from __future__ import annotations

import pytest

from fluorosam_ros.language import intents as K
from fluorosam_ros.language.evaluate import evaluate_text, load_commands, matches, word_errors
from fluorosam_ros.language.parser import CommandParser
from fluorosam_ros.language.vocabulary import default_vocabulary


@pytest.fixture(scope="module")
def commands():
    return load_commands()


def test_the_command_set_covers_what_the_issue_asks(commands):
    assert len(commands) >= 300
    structures = {c.expect["structure"] for c in commands if "structure" in c.expect}
    assert len(structures) >= 60
    assert all(s in default_vocabulary() for s in structures)
    assert set(K.KINDS) <= {c.kind for c in commands}
    tags = {t for c in commands for t in c.tags}
    assert {"paraphrase", "question", "number", "negative"} <= tags
    texts = [c.text for c in commands]
    assert "don't move" in texts and len(set(texts)) == len(texts)


def test_matching_is_exact():
    intent = K.Intent(K.MOVE, direction="left", amount=20.0, unit="mm")
    assert matches(intent, {"kind": "move", "direction": "left", "amount": 20, "unit": "mm"})
    assert not matches(intent, {"kind": "move", "direction": "left"})            # extra slots count
    assert not matches(intent, {"kind": "move", "direction": "right", "amount": 20, "unit": "mm"})
    assert word_errors("a b c".split(), "a x c d".split()) == 2


def test_text_accuracy_and_safety_on_the_whole_set(commands, record_figure):
    summary = evaluate_text(CommandParser(), commands)
    record_figure(f"text: {100 * summary.accuracy:.1f}% exact intent+slots on {summary.utterances} utterances, "
                  f"{summary.false_actions}/{summary.negatives} false actions on negatives, "
                  f"p95 parse {summary.latency_p95_ms:.0f} ms")
    assert summary.false_actions == 0, [f for f in summary.failures if f["got"]["kind"] in K.ACTION_KINDS]
    assert summary.stop_recall == 1.0 and summary.stop_misread == 0
    assert summary.accuracy >= 0.95, summary.failures


def test_the_tuning_split_is_disjoint_from_the_evaluation_set(commands):
    """Speech thresholds are tuned on eval/tuning.yaml plus corpus sentences, never on commands.yaml."""
    from fluorosam_ros.language.evaluate import tuning_commands
    from fluorosam_ros.language.parser import CommandParser, ParserConfig

    parser = CommandParser(config=ParserConfig(use_embeddings=False))
    tuning = tuning_commands(parser, commands=60)
    evaluation = {c.text.lower().strip(" ?!.") for c in commands}
    negatives = [c for c in tuning if c.negative and "tuning" in c.tags]
    assert len(negatives) >= 40 and len(tuning) >= 80
    overlap = [c.text for c in tuning if c.text.lower() in evaluation and len(c.text.split()) >= 4]
    assert not overlap, overlap
    # as text, no off-topic tuning sentence asks for an action
    assert not [c.text for c in negatives if parser.parse(c.text).acts]
