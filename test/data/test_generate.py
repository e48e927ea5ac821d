"""The data engine end to end on the default patient: a small, deterministic, resumable run."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from fluorosam_ros.data.generate import GeneratorConfig, generate, shard_indices
from fluorosam_ros.data.shards import iterate_samples, shard_paths
from fluorosam_ros.data.text import held_out_summary
from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.language.vocabulary import Vocabulary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("fluoroseg")
    config = replace(GeneratorConfig(), out_dir=str(out), images=16, image_size_px=96, shard_size=8, workers=1,
                     deformation_probability=0.0, tool_probability=0.5, seed=3)
    card = generate(config, progress=False)
    samples = list(iterate_samples(shard_paths(out)))
    return config, out, card, samples


def test_card_counts_everything_written(dataset):
    config, out, card, samples = dataset
    assert len(samples) == 16 == sum(card["images_per_split"].values())
    assert sum(card["view_families"].values()) == 16
    assert card["structures"] and card["groups"]
    assert (out / "DATA_CARD.md").is_file()
    assert card["held_out"]["view_families"] == list(config.views.held_out_families)


def test_masks_match_a_fresh_render_of_the_recorded_pose(dataset, default_renderer):
    _, _, _, samples = dataset
    sample = next(s for s in samples if any(m["kind"] == "structure" for m in s.meta["masks"]))
    meta = sample.meta
    config = CArmConfig.for_supine_patient(mirror_columns=meta["mirror_columns"]).with_image_size(96)
    config = replace(config, pixel_size_mm=meta["pixel_size_mm"])
    state = CArmState(config, CArmPose(tuple(meta["isocenter_mm"]), meta["alpha_deg"], meta["beta_deg"]),
                      Collimation(**meta["collimation"]))
    np.testing.assert_allclose(state.camera().index_from_world, meta["index_from_world"], rtol=1e-9)
    render = default_renderer.render(state)
    for record in meta["masks"]:
        if record["kind"] == "structure":
            np.testing.assert_array_equal(sample.mask(record["name"]), render.mask(record["name"]))
    tools = [m for m in meta["masks"] if m["kind"] == "tool"]
    if not tools:  # without tools the image is the render itself (stored as float16)
        np.testing.assert_allclose(sample.image, render.line_integral, rtol=2e-3, atol=2e-3)


def test_group_masks_contain_their_stored_members(dataset):
    vocabulary = Vocabulary.load()
    checked = 0
    for sample in dataset[3]:
        names = [m["name"] for m in sample.meta["masks"]]
        for record in sample.meta["masks"]:
            if record["kind"] != "group":
                continue
            members = [n for n in vocabulary.group_members(record["name"]) if n in names]
            union = np.zeros_like(sample.mask(record["name"]))
            for member in members:
                union |= sample.mask(member)
            assert np.all(sample.mask(record["name"]) >= union)
            checked += 1
    assert checked > 0


def test_negative_prompts_name_only_absent_structures(dataset):
    vocabulary = Vocabulary.load()
    negatives = 0
    for sample in dataset[3]:
        visible = set(sample.meta["visible_structures"])
        for prompt in sample.meta["negatives"]:
            assert prompt["negative"]
            assert not visible & set(vocabulary.group_members(prompt["target"])), prompt
            negatives += 1
    assert negatives > 0


def test_held_out_phrasings_never_appear_in_a_training_shard(dataset):
    held = held_out_summary()
    template_patterns = [re.escape(t).replace(r"\{form\}", ".+").replace(r"\{description\}", ".+")
                         for t in held["templates"].values()]
    paraphrases = {p.lower() for forms in held["paraphrases"].values() for p in forms}
    train_prompts = 0
    for sample in dataset[3]:
        if sample.meta["split"] != "train":
            continue
        for record in sample.meta["masks"]:
            for prompt in record["prompts"] + sample.meta["negatives"]:
                text = prompt["text"].lower()
                assert not prompt.get("template_id", "").startswith("eval_")
                assert not any(re.fullmatch(p, text, flags=re.IGNORECASE) for p in template_patterns), text
                assert not any(re.search(rf"\b{re.escape(p)}\b", text) for p in paraphrases), text
                train_prompts += 1
    assert train_prompts > 50


def test_shards_are_deterministic_and_the_run_resumes(dataset, tmp_path):
    config, out, _, samples = dataset
    # a finished run is not redone
    marker = out / "shard-000000.tar.done.json"
    stamp = marker.stat().st_mtime_ns
    generate(config, progress=False)
    assert marker.stat().st_mtime_ns == stamp
    # shard 1 alone, elsewhere, via the scale-out options: the same samples
    again = replace(config, out_dir=str(tmp_path), shard_index=1, num_shards=2)
    assert shard_indices(again) == [1]
    generate(again, progress=False)
    redone = {s.key: s for s in iterate_samples(shard_paths(tmp_path))}
    original = {s.key: s for s in samples if s.key.startswith("000001_")}
    assert redone.keys() == original.keys()
    for key, sample in original.items():
        assert json.dumps(redone[key].meta["masks"]) == json.dumps(sample.meta["masks"])
        np.testing.assert_array_equal(redone[key].image, sample.image)


def test_patient_folders_and_the_split_by_patient(tmp_path):
    from fluorosam_ros.data.generate import list_patients, patient_split

    assert list_patients("") == [None]
    for name in ("case_b", "case_a", "not_a_patient"):
        (tmp_path / name).mkdir()
    (tmp_path / "case_a" / "ct.nii.gz").write_bytes(b"")
    (tmp_path / "case_b" / "ct.nii.gz").write_bytes(b"")
    assert [p.name for p in list_patients(str(tmp_path))] == ["case_a", "case_b"]
    assert list_patients(str(tmp_path / "case_a")) == [tmp_path / "case_a"]
    with pytest.raises(FileNotFoundError):
        list_patients(str(tmp_path / "not_a_patient"))
    assert patient_split("anyone", 0.2, n_patients=1) is None  # one patient: views decide
    splits = [patient_split(f"case_{i}", 0.2, n_patients=100) for i in range(100)]
    assert splits == [patient_split(f"case_{i}", 0.2, n_patients=100) for i in range(100)]  # stable
    assert 8 <= splits.count("val") <= 35
