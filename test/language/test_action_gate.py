"""The learned action gate: its features, the logistic fit, out-of-fold scoring, the safe
threshold, the file format and its refusals, and parse_recognition's use of it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fluorosam_ros.language.action_gate import (FEATURES, MAX_MARGIN, ActionGate, ActionGateError, action_features,
                                                choose_floors, file_sha256, fit_logistic, lowest_safe_threshold,
                                                out_of_fold)
from fluorosam_ros.language.parser import CommandParser, ParserConfig
from fluorosam_ros.language.speech import Recognition, parse_recognition


def recognition(text: str, gap: float = -0.01, alternatives=None, scores=None, word_fits=None,
                lm_per_word: float = -2.0) -> Recognition:
    alternatives = alternatives or [text]
    details = {"alternatives": alternatives, "alternative_scores": scores or [-float(i) for i in range(len(alternatives))],
               "word_fits": word_fits or [(w, -0.5) for w in text.split()], "lm_per_word": lm_per_word}
    return Recognition(text, True, text, gap, 100, 5.0, details=details)


def separable(rows: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    y = (x[:, 0] + 0.5 * x[:, 3] > 0).astype(float)
    return x, y


def test_features_of_a_recognition():
    heard = recognition("move left ten millimeters", gap=-0.2,
                        alternatives=["move left ten millimeters", "move left ten millimeter", "move right ten millimeters"],
                        scores=[-10.0, -11.0, -13.0], word_fits=[("move", -0.1), ("left", -4.0), ("ten", 0.0),
                                                                 ("millimeters", -20.0)])
    features = dict(zip(FEATURES, action_features(heard, 0.95, [True, True, False])))
    assert features["fit"] == pytest.approx(-0.2)
    assert features["worst_word_fit"] == -12.0                 # clipped
    assert features["mean_word_fit"] == pytest.approx((-0.1 - 4.0 + 0.0 - 12.0) / 4)
    assert features["parser_confidence"] == 0.95
    assert features["agreement"] == pytest.approx(2 / 3)
    mass = np.exp([0.0, -1.0, -3.0])
    assert features["agreement_mass"] == pytest.approx(mass[:2].sum() / mass.sum())
    assert features["margin"] == pytest.approx(3.0)             # best against the best other reading
    assert features["lm_per_word"] == -2.0
    assert features["log_words"] == pytest.approx(math.log(4))
    assert features["log_alternatives"] == pytest.approx(math.log(3))


def test_features_without_a_competing_reading_or_finite_fit():
    heard = recognition("zoom in", gap=float("nan"), alternatives=["zoom in", "zoom in please"])
    features = dict(zip(FEATURES, action_features(heard, 1.0, [True, True])))
    assert features["margin"] == MAX_MARGIN and features["agreement"] == 1.0
    assert features["fit"] == -1.0                              # an unmeasured fit counts as the worst
    assert all(np.isfinite(list(features.values())))


def test_fit_logistic_separates_and_is_monotone():
    x, y = separable()
    gate = fit_logistic(x, y, l2=0.1)
    predicted = gate.probability(x) >= 0.5
    assert (predicted == y.astype(bool)).mean() > 0.95
    low, high = np.zeros(len(FEATURES)), np.zeros(len(FEATURES))
    high[0] = 2.0
    assert gate.probability(high) > gate.probability(low)
    with pytest.raises(ValueError, match="both labels"):
        fit_logistic(x, np.ones(len(x)))


def test_out_of_fold_scores_a_group_without_it():
    x, y = separable(60)
    groups = [f"s{i // 3}" for i in range(len(x))]            # 20 sentences, 3 voices each
    held_out = out_of_fold(x, y, groups, folds=20, l2=1.0)
    first = np.array([g == "s0" for g in groups])
    # leave-one-group-out: the first sentence's rows are scored by a gate fitted on the others
    alone = fit_logistic(x[~first], y[~first], 1.0).probability(x[first])
    order = np.random.default_rng(0).permutation(sorted(set(groups))).tolist()
    same_fold = np.array([order.index(g) % 20 == order.index("s0") % 20 for g in groups])
    assert same_fold.sum() == 3
    np.testing.assert_allclose(held_out[first], alone)
    assert not np.allclose(held_out, fit_logistic(x, y, 1.0).probability(x))


def test_out_of_fold_repeats_average_the_splits():
    x, y = separable(60)
    groups = [f"s{i // 3}" for i in range(len(x))]
    one = out_of_fold(x, y, groups, folds=5, l2=1.0)
    assert np.array_equal(out_of_fold(x, y, groups, folds=5, l2=1.0, repeats=1), one)
    # the second split on its own: its folds group other sentences, so its probabilities differ
    second = out_of_fold(x, y, groups, folds=5, l2=1.0, repeats=2) * 2 - one
    assert not np.allclose(second, one)
    assert np.all((second > 0) & (second < 1))
    averaged = out_of_fold(x, y, groups, folds=5, l2=1.0, repeats=20)
    assert np.all((averaged > 0) & (averaged < 1))
    with pytest.raises(ValueError, match="repeats"):
        out_of_fold(x, y, groups, repeats=0)


def test_lowest_safe_threshold_is_above_every_must_not_act():
    p = np.array([0.2, 0.9, 0.5, 0.95])
    must_not = np.array([True, False, True, False])
    threshold = lowest_safe_threshold(p, must_not)
    assert 0.5 < threshold < 0.9 and not np.any(p[must_not] >= threshold)
    assert lowest_safe_threshold(p, np.zeros(4, bool)) > 0.0


def test_floors_veto_what_the_probability_would_let_through():
    """A fluent decode of talk: high probability, but its N-best disagree. A floor on agreement
    keeps it out without raising the threshold over the right readings."""
    features = np.zeros((6, len(FEATURES)))
    agreement, worst = FEATURES.index("agreement"), FEATURES.index("worst_word_fit")
    features[:, agreement] = [1.0, 1.0, 0.9, 0.8, 0.33, 0.5]
    features[:, worst] = [-1.0, -0.5, -2.5, -1.0, -0.2, -6.0]
    probabilities = np.array([0.7, 0.8, 0.75, 0.9, 0.97, 0.6])
    right = np.array([True, True, True, True, False, False])
    off_topic = np.array([False, False, False, False, True, False])      # the last: a misheard command
    floors, threshold = choose_floors(probabilities, features, right, off_topic)
    assert floors.agreement > 0.33 and threshold <= 0.7
    acts = (probabilities >= threshold) & floors.passes(features)
    assert acts[:4].all() and not acts[4:].any()
    gate = ActionGate(weights=[0.0] * len(FEATURES), bias=0.0, mean=[0.0] * len(FEATURES),
                      scale=[1.0] * len(FEATURES), threshold=0.4, min_agreement=0.5, min_word_fit=-3.0)
    assert "alternatives agree" in gate.refusal(features[4])
    assert "worst word" in gate.refusal(features[5])
    assert gate.refusal(features[0]) == ""                               # p = 0.5 >= 0.4


def test_a_floor_on_the_agreeing_probability_mass_keeps_right_readings_a_share_floor_refuses():
    """Right readings whose N-best hold many unlikely alternatives that read otherwise (a low
    share, nearly all the mass agreeing), and talk whose alternatives are as likely as its best:
    no share floor separates them, a mass floor does."""
    features = np.zeros((6, len(FEATURES)))
    share, mass = FEATURES.index("agreement"), FEATURES.index("agreement_mass")
    features[:, share] = [0.25, 0.33, 0.5, 1.0, 0.5, 0.6]
    features[:, mass] = [0.999, 0.998, 0.995, 1.0, 0.6, 0.7]
    probabilities = np.array([0.8, 0.85, 0.9, 0.9, 0.95, 0.9])
    right = np.array([True, True, True, True, False, False])
    off_topic = np.array([False, False, False, False, True, True])
    floors, threshold = choose_floors(probabilities, features, right, off_topic)
    acts = (probabilities >= threshold) & floors.passes(features)
    assert acts[:4].all() and not acts[4:].any()
    assert floors.agreement_mass > 0.7
    # with share floors alone, talk at 0.95 forces the threshold over every right reading but one
    share_only, share_threshold = choose_floors(probabilities, features, right, off_topic, agreement_masses=(0.0,))
    assert ((probabilities >= share_threshold) & share_only.passes(features) & right).sum() < 4
    gate = ActionGate(weights=[0.0] * len(FEATURES), bias=0.0, mean=[0.0] * len(FEATURES),
                      scale=[1.0] * len(FEATURES), threshold=0.4)
    floors.apply_to(gate)
    assert "probability agrees" in gate.refusal(features[4]) and gate.refusal(features[0]) == ""


def test_gate_file_round_trip_and_refusals(tmp_path):
    x, y = separable()
    gate = fit_logistic(x, y)
    gate.threshold, gate.acoustic_sha256 = 0.8, "ab" * 32
    path = gate.save(tmp_path / "gate.json")
    again = ActionGate.load(path, acoustic_sha256="ab" * 32)
    assert again.threshold == 0.8 and again.features == FEATURES
    np.testing.assert_allclose(again.probability(x[:5]), gate.probability(x[:5]))
    with pytest.raises(ActionGateError, match="another acoustic model"):
        ActionGate.load(path, acoustic_sha256="cd" * 32)
    with pytest.raises(ActionGateError, match="not found"):
        ActionGate.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ActionGateError, match="cannot be read"):
        ActionGate.load(tmp_path / "bad.json")
    record = json.loads(path.read_text())
    for change, message in (({"format": "other/1"}, "is not a"), ({"features": ["fit"]}, "measures"),
                            ({"bias": float("nan")}, "non-finite"), ({"weights": None}, "incomplete")):
        (tmp_path / "changed.json").write_text(json.dumps({**record, **change}))
        with pytest.raises(ActionGateError, match=message):
            ActionGate.load(tmp_path / "changed.json")
    del record["scale"]
    (tmp_path / "short.json").write_text(json.dumps(record))
    with pytest.raises(ActionGateError, match="incomplete"):
        ActionGate.load(tmp_path / "short.json")
    assert file_sha256(path) == file_sha256(path) and len(file_sha256(path)) == 64


def test_parse_recognition_with_a_learned_gate():
    parser = CommandParser(config=ParserConfig(use_embeddings=False))
    # a gate that trusts the fit alone: 50 % at a fit of -0.1
    weights = [0.0] * len(FEATURES)
    weights[0] = 1.0
    gate = ActionGate(weights=weights, bias=0.0, mean=[-0.1] + [0.0] * (len(FEATURES) - 1),
                      scale=[0.01] + [1.0] * (len(FEATURES) - 1), threshold=0.9)
    clear = parse_recognition(recognition("move left ten millimeters", gap=-0.05), parser, gate=gate)
    assert clear.kind == "move" and clear.details["asr_action_probability"] > 0.9
    unclear = parse_recognition(recognition("move left ten millimeters", gap=-0.2), parser, gate=gate)
    assert unclear.kind == "not_understood" and not unclear.acts
    assert "sure of it" in unclear.error and unclear.candidates
    # stop and where never need the gate
    assert parse_recognition(recognition("stop", gap=-0.9), parser, gate=gate).kind == "stop"
    assert parse_recognition(recognition("where is the liver", gap=-0.9), parser, gate=gate).kind == "where"
