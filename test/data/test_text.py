"""Prompt generation for the data engine: variety, determinism, held-out sets, negatives."""

from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.data.text import (HELD_OUT_MARKERS, HELD_OUT_TEMPLATES, Prompt, PromptGenerator,
                                     absent_targets, indefinite_article)
from fluorosam_ros.language.vocabulary import normalize

COMMON = ["liver", "heart", "trachea", "femur_left", "vertebrae_L3", "rib_right_7", "ribs", "spine",
          "lungs", "pelvis", "kidney_right", "screw", "k_wire"]


@pytest.fixture(scope="module")
def generator() -> PromptGenerator:
    return PromptGenerator()


def _mentions_any(text: str, normalized_phrases: set[str]) -> bool:
    padded = f" {normalize(text)} "
    return any(f" {phrase} " in padded for phrase in normalized_phrases)


def _contains(text: str, phrase: str) -> bool:
    """Whole-word containment after normalisation ("L3" is in "the L-3 vertebra")."""
    return f" {normalize(phrase)} " in f" {normalize(text)} "


@pytest.mark.parametrize("name", COMMON)
def test_up_to_30_distinct_prompts(generator, name):
    prompts = generator.prompts(name, np.random.default_rng(0))
    texts = [p.text for p in prompts]
    assert 5 <= len(texts) <= 30
    assert len(set(texts)) == len(texts)
    assert all(p.target == name and p.split == "train" and not p.negative for p in prompts)
    assert len(generator.prompts(name, np.random.default_rng(0), max_prompts=3)) == 3


def test_deterministic_for_a_seed(generator):
    first = generator.prompts("femur_left", np.random.default_rng(7))
    assert first == generator.prompts("femur_left", np.random.default_rng(7))
    assert first != generator.prompts("femur_left", np.random.default_rng(8))
    negatives = [generator.negative_prompts(["liver", "ribs"], np.random.default_rng(3), 5)
                 for _ in range(2)]
    assert negatives[0] == negatives[1]


def _train_samples(generator: PromptGenerator, count: int) -> list[Prompt]:
    rng = np.random.default_rng(2024)
    names = generator.vocabulary.names()
    samples: list[Prompt] = []
    while len(samples) < count:
        for name in names:
            samples += generator.prompts(name, rng, max_prompts=int(rng.integers(1, 12)))
    return samples[:count]


def test_held_out_templates_and_paraphrases_never_appear_in_training(generator):
    held = generator.held_out_summary()
    held_forms = {normalize(text) for texts in held["paraphrases"].values() for text in texts}
    assert set(held["templates"]) == set(HELD_OUT_TEMPLATES)
    samples = _train_samples(generator, 2000)
    assert len(samples) == 2000
    assert len({p.target for p in samples}) == len(generator.vocabulary.names())
    for prompt in samples:
        assert prompt.template_id not in HELD_OUT_TEMPLATES
        assert not any(marker in prompt.text.lower() for marker in HELD_OUT_MARKERS), prompt.text
        assert prompt.surface_form not in held["paraphrases"].get(prompt.target, ())
        assert not _mentions_any(prompt.text, held_forms), prompt.text
    # every possible training prompt, not only these samples
    for name in generator.vocabulary.names():
        for text in generator.candidate_texts(name, "train"):
            assert not _mentions_any(text, held_forms), text


def test_the_eval_split_holds_the_held_out_prompts(generator):
    held = generator.held_out_summary()
    for name in ["trachea", "vertebrae_L3", "femur_right", "liver", "ribs"]:
        prompts = generator.prompts(name, np.random.default_rng(1), max_prompts=30, split="eval")
        assert prompts and all(p.split == "eval" for p in prompts)
        for prompt in prompts:
            assert (prompt.template_id in HELD_OUT_TEMPLATES
                    or prompt.surface_form in held["paraphrases"].get(name, ())), prompt
    assert any("windpipe" in t for t in generator.candidate_texts("trachea", "eval"))
    assert any("lumbar three" in t for t in generator.candidate_texts("vertebrae_L3", "eval"))
    assert any("thigh bone" in t for t in generator.candidate_texts("femurs", "eval"))
    ribs_eval = generator.prompts("ribs", np.random.default_rng(2), 30, "eval")
    eval_templates = {p.template_id for p in ribs_eval}
    assert eval_templates <= HELD_OUT_TEMPLATES and len(eval_templates) >= 3
    # the cervical spoken form stays in training, so evaluation measures transfer
    assert any("cervical three" in t for t in generator.candidate_texts("vertebrae_C3", "train"))


def test_negative_prompts_name_only_absent_targets(generator):
    vocabulary = generator.vocabulary
    present = ["liver", "femur_left", "rib_left_3", "vertebrae_L3"]
    absent = absent_targets(vocabulary, present)
    assert "liver" not in absent and "femurs" not in absent and "ribs" not in absent
    assert "trachea" in absent and "skull" in absent
    negatives = generator.negative_prompts(absent, np.random.default_rng(5), 50)
    assert len(negatives) == 50
    for prompt in negatives:
        assert prompt.negative and prompt.target in absent and prompt.units == ()
        assert not set(vocabulary.group_members(prompt.target)) & set(present)
    assert generator.negative_prompts([], np.random.default_rng(5), 3) == []


def test_groups_have_comprehensive_and_non_comprehensive_prompts(generator):
    vocabulary = generator.vocabulary
    rng = np.random.default_rng(11)
    prompts = [p for _ in range(20) for p in generator.prompts("ribs_left", rng)]
    comprehensive = [p for p in prompts if p.comprehensive]
    single = [p for p in prompts if not p.comprehensive]
    assert comprehensive and single
    members = tuple(vocabulary.group_members("ribs_left"))
    assert all(p.units == (members,) for p in comprehensive)
    assert all(p.units == tuple((m,) for m in members) for p in single)
    texts = set(generator.candidate_texts("ribs_left"))
    assert {"all the left ribs", "a left rib", "one of the left ribs", "every left rib"} <= texts
    assert "the whole spine" in generator.candidate_texts("spine")
    assert "both femurs" in generator.candidate_texts("femurs")
    # "a lung" is one whole lung (a side), "a lung lobe" one lobe
    every_lungs_prompt = {p.text: p for p in generator.prompts("lungs", rng, max_prompts=1000)}
    assert every_lungs_prompt["a lung"].units == (
        tuple(vocabulary.group_members("lung_left")), tuple(vocabulary.group_members("lung_right")))
    assert len(every_lungs_prompt["a lung lobe"].units) == 5
    assert every_lungs_prompt["both lungs"].comprehensive


def test_l3_prompts_use_abbreviation_and_words(generator):
    texts = generator.candidate_texts("vertebrae_L3")
    assert any(_contains(t, "L3") for t in texts)
    assert any("third lumbar vertebra" in t for t in texts)
    sampled = [p.text for p in generator.prompts("vertebrae_L3", np.random.default_rng(0))]
    assert any(_contains(t, "L3") for t in sampled)
    assert generator.canonical("vertebrae_L3") == "third lumbar vertebra"


def test_template_families(generator):
    texts = set(generator.candidate_texts("femur_left"))
    for text in ("the left femur", "show me the left femur", "segment the left femur",
                 "where is the femur on the left side?",
                 "which bone is in the left thigh?", "femur left"):
        assert text in texts, text
    assert "all the ribs left" not in generator.candidate_texts("ribs_left")
    assert "where are the pulmonary veins?" in generator.candidate_texts("pulmonary_vein")
    assert "segment the IVC" not in generator.candidate_texts("inferior_vena_cava")
    assert "segment the IVC" in generator.candidate_texts("inferior_vena_cava", "eval")
    assert generator.canonical("femur_left") == "left femur"


def test_indefinite_article():
    assert indefinite_article("L3 vertebra") == "an"
    assert indefinite_article("left rib") == "a"
    assert indefinite_article("upper limb bone") == "an"
    assert indefinite_article("C7") == "a"
    assert indefinite_article("screw") == "a"
