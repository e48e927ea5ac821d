from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.data.shards import Sample
from fluorosam_ros.train.prompts import (PromptSamplerConfig, TrainingPrompt, correction_clicks,
                                         next_point, prompt_weights, sample_prompt,
                                         target_for_prompt)

SIZE = 16


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _prompt(text, target, units, comprehensive=True, negative=False, split="train") -> dict:
    return {"text": text, "target": target, "template_id": "noun_the",
            "comprehensive": comprehensive, "negative": negative, "split": split,
            "units": [list(u) for u in units]}


def _sample() -> Sample:
    """rib_1, rib_2 stored; rib_3 too small to be stored but part of the stored group mask;
    femur_left stored, femur_right absent; one screw."""
    rib_1, rib_2, rib_3 = _box(0, 2, 0, 8), _box(3, 5, 0, 8), _box(6, 7, 0, 2)
    femur_left, screw = _box(8, 16, 0, 4), _box(10, 12, 10, 16)
    ribs = rib_1 | rib_2 | rib_3
    ribs_units = [("rib_1", "rib_2", "rib_3")]
    records = [
        {"name": "rib_1", "kind": "structure",
         "prompts": [_prompt("the first rib", "rib_1", [("rib_1",)])]},
        {"name": "rib_2", "kind": "structure",
         "prompts": [_prompt("the second rib", "rib_2", [("rib_2",)])]},
        {"name": "ribs", "kind": "group", "prompts": [
            _prompt("all the ribs", "ribs", ribs_units),
            _prompt("a rib", "ribs", [("rib_1",), ("rib_2",), ("rib_3",)], comprehensive=False),
            _prompt("which ribs (eval)", "ribs", ribs_units, split="eval")]},
        {"name": "femur_left", "kind": "structure", "prompts": [
            _prompt("the left femur", "femur_left", [("femur_left",)])]},
        {"name": "femurs", "kind": "group", "prompts": [
            _prompt("either femur", "femurs", [("femur_left",), ("femur_right",)],
                    comprehensive=False)]},
        {"name": "tool_screw_0", "kind": "tool", "prompts": [
            {"text": "a pedicle screw", "template_id": "tool", "comprehensive": False}]},
    ]
    masks = np.stack([rib_1, rib_2, ribs, femur_left, femur_left, screw])
    meta = {"masks": records,
            "negatives": [_prompt("the skull", "skull", [], negative=True),
                          _prompt("the heart", "heart", [], negative=True)],
            "visible_structures": ["rib_1", "rib_2", "rib_3", "femur_left"]}
    image = np.zeros((SIZE, SIZE), np.float32)
    return Sample("s0", meta, image, np.ones((SIZE, SIZE), bool), masks)


def _record_prompt(sample: Sample, name: str, index: int = 0) -> dict:
    return next(r for r in sample.meta["masks"] if r["name"] == name)["prompts"][index]


def test_comprehensive_group_uses_stored_group_mask():
    sample = _sample()
    target = target_for_prompt(_record_prompt(sample, "ribs"), sample, np.random.default_rng(0))
    np.testing.assert_array_equal(target, sample.mask("ribs"))
    assert target[6, 0]                                  # the unstored rib_3 is included


def test_comprehensive_without_stored_target_is_union_of_present_members():
    sample = _sample()
    prompt = _prompt("ribs one and two", "upper_ribs", [("rib_1", "rib_2", "rib_9")])
    target = target_for_prompt(prompt, sample, np.random.default_rng(0))
    np.testing.assert_array_equal(target, sample.mask("rib_1") | sample.mask("rib_2"))


def test_non_comprehensive_returns_one_present_unit():
    sample = _sample()
    prompt = _record_prompt(sample, "ribs", 1)
    seen = set()
    for seed in range(30):
        target = target_for_prompt(prompt, sample, np.random.default_rng(seed))
        matches = [n for n in ("rib_1", "rib_2") if np.array_equal(target, sample.mask(n))]
        assert len(matches) == 1                         # exactly one rib, never the group
        seen.add(matches[0])
    assert seen == {"rib_1", "rib_2"}


def test_non_comprehensive_skips_absent_units_and_none_when_nothing_present():
    sample = _sample()
    target = target_for_prompt(_record_prompt(sample, "femurs"), sample, np.random.default_rng(3))
    np.testing.assert_array_equal(target, sample.mask("femur_left"))
    nothing = _prompt("a kidney", "kidneys", [("kidney_left",), ("kidney_right",)],
                      comprehensive=False)
    assert target_for_prompt(nothing, sample, np.random.default_rng(0)) is None
    assert target_for_prompt(_prompt("the skull", "skull", [("skull",)]), sample) is None


def test_tool_prompt_without_units_uses_tool_mask():
    sample = _sample()
    prompt = _record_prompt(sample, "tool_screw_0")
    np.testing.assert_array_equal(target_for_prompt(prompt, sample, np.random.default_rng(0)),
                                  sample.mask("tool_screw_0"))
    copy = dict(prompt)                                  # found by equality, or named explicitly
    np.testing.assert_array_equal(target_for_prompt(copy, sample), sample.mask("tool_screw_0"))
    np.testing.assert_array_equal(target_for_prompt({"text": "x"}, sample, mask_name="rib_2"),
                                  sample.mask("rib_2"))


def test_next_point_clicks_inside_missed_blob():
    target = _box(2, 11, 2, 11)
    prediction = np.zeros_like(target)
    point, label = next_point(prediction, target, np.random.default_rng(0))
    assert label == 1
    assert tuple(point) == (6.0, 6.0)                     # the centre (x, y) of the 9x9 blob


def test_next_point_negative_click_on_over_segmentation():
    target = _box(0, 4, 0, 4)
    prediction = target | _box(8, 15, 8, 15)
    for seed in range(5):
        point, label = next_point(prediction, target, np.random.default_rng(seed))
        x, y = int(point[0]), int(point[1])
        assert label == 0 and prediction[y, x] and not target[y, x]
        assert 9 <= x <= 13 and 9 <= y <= 13              # interior, not on the region's edge


def test_next_point_prefers_larger_error_and_none_when_perfect():
    target = _box(0, 10, 0, 10)
    prediction = target.copy()
    prediction[:, :8] = False                            # 80 false negatives
    prediction[14:16, 14:16] = True                      # 4 false positives
    point, label = next_point(prediction, target, np.random.default_rng(0))
    assert label == 1 and target[int(point[1]), int(point[0])]
    assert not prediction[int(point[1]), int(point[0])]
    assert next_point(target, target, np.random.default_rng(0)) is None


def test_prompt_weights_balance_text_only_against_points():
    has_text = np.array([True, True, True, True, True, False])
    num_points = np.array([0, 0, 0, 0, 2, 1])
    weights = prompt_weights(has_text, num_points)
    text_only = has_text & (num_points == 0)
    assert weights[text_only].sum() == pytest.approx(weights[~text_only].sum())
    assert weights.mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(prompt_weights(np.ones(3, bool), np.zeros(3, int)), np.ones(3))
    np.testing.assert_array_equal(prompt_weights(np.ones(2, bool), np.array([1, 3])), np.ones(2))
    fixed = prompt_weights(has_text, num_points, text_only_weight=0.5)
    np.testing.assert_array_equal(fixed, [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])


def _same(a: TrainingPrompt, b: TrainingPrompt) -> bool:
    return (a.text == b.text and a.absent == b.absent and a.mask_name == b.mask_name
            and np.array_equal(a.target, b.target) and np.array_equal(a.points, b.points))


def test_sample_prompt_is_deterministic_given_rng():
    sample, config = _sample(), PromptSamplerConfig()
    first = [sample_prompt(sample, np.random.default_rng(7), config) for _ in range(3)]
    assert all(_same(first[0], p) for p in first[1:])
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(20):
        assert _same(sample_prompt(sample, rng_a, config), sample_prompt(sample, rng_b, config))


def test_sample_prompt_respects_probabilities_and_split():
    sample = _sample()
    config = PromptSamplerConfig(negative_prompt_probability=0.2, point_only_probability=0.3)
    rng, n = np.random.default_rng(0), 2000
    prompts = [sample_prompt(sample, rng, config) for _ in range(n)]
    negative = np.mean([p.absent for p in prompts])
    point_only = np.mean([p.text is None for p in prompts])
    assert negative == pytest.approx(0.2, abs=0.03)
    assert point_only == pytest.approx(0.8 * 0.3, abs=0.03)
    assert "which ribs (eval)" not in {p.text for p in prompts}
    for p in prompts:
        if p.absent:
            continue
        assert p.target.any()
        if p.text is None:                               # one positive click inside the target
            assert p.points.shape == (1, 2) and p.labels.tolist() == [1]
            assert p.target[int(p.points[0, 1]), int(p.points[0, 0])]
        else:
            assert p.points.shape == (0, 2) and p.labels.shape == (0,)
    text_only = PromptSamplerConfig(0, 0.0, 0.5, 0.0)
    eval_texts = {sample_prompt(sample, rng, text_only, split="eval").text for _ in range(50)}
    assert eval_texts <= {"which ribs (eval)", "a pedicle screw"}


def test_negative_prompts_have_empty_targets():
    sample = _sample()
    config = PromptSamplerConfig(negative_prompt_probability=1.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        prompt = sample_prompt(sample, rng, config)
        assert prompt.absent and prompt.text in {"the skull", "the heart"}
        assert prompt.target.shape == (SIZE, SIZE) and not prompt.target.any()
        assert len(prompt.points) == 0


def test_no_negatives_means_no_negative_prompts():
    sample = _sample()
    sample.meta["negatives"] = []
    rng = np.random.default_rng(2)
    config = PromptSamplerConfig(negative_prompt_probability=1.0)
    assert not any(sample_prompt(sample, rng, config).absent for _ in range(20))


def test_correction_clicks_bounds():
    config = PromptSamplerConfig(max_points=4, text_only_probability=0.5)
    rng = np.random.default_rng(0)
    empty = np.zeros((SIZE, SIZE), bool)
    no_points = (np.zeros((0, 2)), np.zeros(0, int))
    text = TrainingPrompt("x", _box(0, 2, 0, 2), False, *no_points, "m", True)
    absent = TrainingPrompt("x", empty, True, *no_points, "m", True)
    counts = [correction_clicks(text, rng, config) for _ in range(400)]
    assert 0.4 < np.mean([c == 0 for c in counts]) < 0.6 and max(counts) <= 4
    assert all(correction_clicks(absent, rng, config) == 0 for _ in range(10))


def test_canonical_text_prompts_name_the_structure_and_its_own_mask():
    sample = _sample()
    canonical = {"rib_1": "first rib", "femur_left": "left femur"}  # the other records have none
    for record in sample.meta["masks"]:
        if record["name"] in canonical:
            record["canonical"] = canonical[record["name"]]
    rng = np.random.default_rng(3)
    always = PromptSamplerConfig(negative_prompt_probability=0.0, point_only_probability=0.0,
                                 canonical_text_probability=1.0)
    prompts = [sample_prompt(sample, rng, always) for _ in range(100)]
    assert {p.text for p in prompts} == set(canonical.values())
    index = {r["name"]: i for i, r in enumerate(sample.meta["masks"])}
    for p in prompts:
        assert p.comprehensive and not p.absent
        assert np.array_equal(p.target, sample.masks[index[p.mask_name]])
    half = PromptSamplerConfig(negative_prompt_probability=0.0, point_only_probability=0.0,
                               canonical_text_probability=0.5)
    texts = [sample_prompt(sample, rng, half).text for _ in range(1000)]
    assert np.mean([t in canonical.values() for t in texts]) == pytest.approx(0.5, abs=0.05)
