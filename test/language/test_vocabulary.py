"""The anatomy vocabulary: completeness against TotalSegmentator, resolution, no ambiguity."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from fluorosam_ros.language.vocabulary import (Numbering, Vocabulary, VocabularyError, normalize,
                                               ordinal_number)

STRUCTURES_CSV = Path(os.environ.get("FLUOROSAM_ROOT", Path(__file__).resolve().parents[2])) / \
    "data" / "patients" / "default" / "structures.csv"
# The label map's id 118 may be missing from an older CSV; it is a class all the same.
EXTRA_CLASSES = {"costal_cartilages": 118}


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.load()


def _csv_classes() -> dict[str, int]:
    assert STRUCTURES_CSV.is_file(), f"{STRUCTURES_CSV} missing: scripts/setup.sh fetches the default patient"
    with STRUCTURES_CSV.open(newline="", encoding="utf-8") as stream:
        classes = {row["structure"].strip(): int(row["id"]) for row in csv.DictReader(stream)}
    return {**EXTRA_CLASSES, **classes}


def test_every_totalsegmentator_class_has_an_entry_that_resolves(vocabulary):
    classes = _csv_classes()
    assert len(classes) >= 118
    for name, label in classes.items():
        entry = vocabulary.entry(name)
        assert entry.kind == "structure"
        assert entry.label == label, name
        assert vocabulary.resolve(name) == name
        assert vocabulary.resolve(entry.display) == name


def test_structure_labels_cover_the_label_map_without_the_csv(vocabulary):
    labels = sorted(entry.label for entry in vocabulary.structures())
    assert labels == list(range(1, 119))
    assert vocabulary.entry("costal_cartilages").kind == "structure"


@pytest.mark.parametrize("text, name", [
    ("L3", "vertebrae_L3"), ("third lumbar vertebra", "vertebrae_L3"), ("lumbar three", "vertebrae_L3"),
    ("L-3", "vertebrae_L3"), ("l 3", "vertebrae_L3"), ("3rd lumbar", "vertebrae_L3"),
    ("the L3 vertebra", "vertebrae_L3"), ("T12", "vertebrae_T12"), ("Th12", "vertebrae_T12"),
    ("twelfth thoracic vertebra", "vertebrae_T12"), ("C7", "vertebrae_C7"), ("atlas", "vertebrae_C1"),
    ("S1", "vertebrae_S1"), ("left 5th rib", "rib_left_5"), ("fifth rib on the right", "rib_right_5"),
    ("windpipe", "trachea"), ("gullet", "esophagus"), ("breastbone", "sternum"), ("backbone", "spine"),
    ("left collarbone", "clavicula_left"), ("Right collar-bone", "clavicula_right"),
    ("left thigh bone", "femur_left"), ("the left thigh bone", "femur_left"),
    ("femur, right", "femur_right"),
    ("left-sided femur", "femur_left"), ("femur on the left side", "femur_left"),
    ("left hip bone", "hip_left"), ("right shoulder blade", "scapula_right"),
    ("IVC", "inferior_vena_cava"), ("SVC", "superior_vena_cava"), ("LUL", "lung_upper_lobe_left"),
    ("RLL", "lung_lower_lobe_right"), ("right middle lobe", "lung_middle_lobe_right"),
    ("left lung", "lung_left"), ("lungs", "lungs"), ("left ribs", "ribs_left"), ("pelvis", "pelvis"),
    ("Kirschner wire", "k_wire"), ("guide wire", "k_wire"), ("pin", "k_wire"),
    ("nail", "intramedullary_nail"), ("IM nail", "intramedullary_nail"), ("rod", "intramedullary_nail"),
    ("screws", "screw"), ("drill", "drill_bit"),
])
def test_resolves(vocabulary, text, name):
    assert vocabulary.resolve(text) == name


@pytest.mark.parametrize("text, group", [
    ("collarbone", "clavicles"), ("thigh bone", "femurs"), ("femur", "femurs"), ("hip bone", "hips"),
    ("shoulder blade", "scapulae"), ("lung", "lungs"), ("kidney", "kidneys"), ("rib", "ribs"),
])
def test_a_bare_paired_noun_names_the_bilateral_group_not_a_guessed_side(vocabulary, text, group):
    assert vocabulary.resolve(text) == group
    assert vocabulary.entry(group).bilateral


def test_side_words_outside_the_generated_phrasings_still_apply(vocabulary):
    assert vocabulary.resolve("thigh bone of the left hand side") == "femur_left"
    assert vocabulary.resolve("the collarbone, right side") == "clavicula_right"
    assert vocabulary.resolve("left sternum") is None      # unpaired: no side to take
    assert vocabulary.resolve("left right femur") is None  # contradictory


def test_unknown_phrases_do_not_resolve(vocabulary):
    for text in ("", "kneecap", "fifth rib", "L9", "the moon"):
        assert vocabulary.resolve(text) is None


def test_numbered_forms_are_generated_from_the_numbering_fields(vocabulary):
    entry = vocabulary.entry("vertebrae_L3")
    assert entry.numbering == Numbering("lumbar", 3)
    assert entry.level == "L3"
    assert entry.display == "third lumbar vertebra"
    forms = vocabulary.surface_forms("vertebrae_L3")
    for text in ("L3", "third lumbar vertebra", "lumbar three", "3rd lumbar", "L3 vertebra"):
        assert text in forms
    assert vocabulary.entry("rib_right_12").display == "right twelfth rib"
    assert vocabulary.entry("rib_right_12").numbering.level is None


def test_laterality_phrasings(vocabulary):
    forms = vocabulary.surface_forms("femur_left")
    for text in ("left femur", "femur left", "left thigh bone", "femur on the left side"):
        assert text in forms
    assert vocabulary.entry("femur_left").laterality == "left"
    assert vocabulary.entry("liver").laterality == "none"


def test_no_surface_form_names_two_entries(vocabulary):
    owner: dict[str, str] = {}
    for name in vocabulary.names():
        for text in vocabulary.surface_forms(name):
            key = normalize(text)
            assert owner.setdefault(key, name) == name, f"{text!r}: {owner[key]} and {name}"
    assert len(owner) > 1000


def test_groups(vocabulary):
    groups = vocabulary.groups()
    assert len(groups) >= 30
    structure_names = {e.name for e in vocabulary.structures()}
    for group in groups:
        assert all(member in vocabulary for member in group.members), group.name
        assert set(vocabulary.group_members(group.name)) <= structure_names, group.name
    lobes = ["lung_upper_lobe_left", "lung_lower_lobe_left"]
    assert vocabulary.group_members("lung_left") == lobes
    assert len(vocabulary.group_members("ribs")) == 24
    spine = set(vocabulary.group_members("spine"))
    assert {"sacrum", "vertebrae_C1", "vertebrae_T12", "vertebrae_L5", "vertebrae_S1"} <= spine
    assert len(spine) == 26
    assert {"hip_left", "hip_right", "sacrum"} <= set(vocabulary.group_members("pelvis"))
    assert set(vocabulary.group_members("bowel")) == {"small_bowel", "duodenum", "colon"}
    assert vocabulary.group_members("liver") == ["liver"]


def test_tools(vocabulary):
    names = {tool.name for tool in vocabulary.tools()}
    assert names == {"screw", "k_wire", "plate", "scalpel", "retractor", "drill_bit",
                     "intramedullary_nail", "clamp", "surgical_clip"}


def test_every_entry_has_a_description_usable_in_questions(vocabulary):
    descriptions = [vocabulary.entry(name).description for name in vocabulary.names()]
    assert all(d.startswith("the ") and len(d.split()) >= 3 for d in descriptions)
    assert len(set(descriptions)) == len(descriptions)


def test_normalize():
    assert normalize("The  L-3 Vertebra!") == "l3 vertebra"
    assert normalize("Left-sided FEMUR") == "left sided femur"
    assert ordinal_number(3) == "3rd" and ordinal_number(11) == "11th" and ordinal_number(12) == "12th"


def _document(*structures: dict) -> dict:
    return {"structures": list(structures)}


def test_an_ambiguous_vocabulary_is_refused():
    data = _document(
        {"name": "a_bone", "display": "a bone", "synonyms": ["shared"], "description": "the bone here"},
        {"name": "b_bone", "display": "b bone", "synonyms": ["shared"], "description": "the bone there"})
    with pytest.raises(VocabularyError, match="ambiguous"):
        Vocabulary.from_dict(data)


def test_a_side_said_after_a_numbered_rib_or_a_pair_resolves(vocabulary):
    assert vocabulary.resolve("5th rib on the left") == "rib_left_5"
    assert vocabulary.resolve("rib 7 on the right hand side") == "rib_right_7"
    assert vocabulary.resolve("common carotid on the left") == "common_carotid_artery_left"
    assert vocabulary.resolve("left kidney on the right") is None


def test_the_ends_of_a_numbered_series_are_named_by_position(vocabulary):
    assert vocabulary.resolve("the lowest thoracic vertebra") == "vertebrae_T12"
    assert vocabulary.resolve("top cervical vertebra") == "vertebrae_C1"
    assert vocabulary.resolve("lowest lumbar") == "vertebrae_L5"
    assert vocabulary.resolve("lowest rib on the left") == "rib_left_12"
    assert vocabulary.resolve("right uppermost rib") == "rib_right_1"
    assert vocabulary.resolve("lowest rib") is None        # which side?


def test_anatomy_without_an_entry_is_listed_and_may_not_name_one(vocabulary):
    assert vocabulary.not_segmented_term("highlight the left ureter") == "ureter"
    assert vocabulary.not_segmented_term("where's the belly button?") == "belly button"
    assert vocabulary.not_segmented_term("show the liver") == ""
    with pytest.raises(VocabularyError, match="not_segmented"):
        Vocabulary.from_dict({**_document({"name": "a_bone", "display": "a bone", "synonyms": ["shin"],
                                           "description": "the bone here"}), "not_segmented": ["shin"]})


def test_unknown_group_members_and_cycles_are_refused():
    bone = {"name": "a_bone", "display": "a bone", "description": "the bone here"}
    with pytest.raises(VocabularyError, match="unknown members"):
        Vocabulary.from_dict({**_document(bone), "groups": [
            {"name": "g", "display": "gs", "members": ["nothing"], "description": "the gs here"}]})
    with pytest.raises(VocabularyError, match="cycle"):
        Vocabulary.from_dict({**_document(bone), "groups": [
            {"name": "g", "display": "gs", "members": ["h"], "description": "the gs here"},
            {"name": "h", "display": "hs", "members": ["g"], "description": "the hs here"}]})


def test_a_pair_is_written_once_and_expanded_per_side():
    vocabulary = Vocabulary.from_dict(_document(
        {"base": "femur", "lay": ["thigh bone"], "description": "the bone in the {side} thigh",
         "sides": {"left": {"name": "femur_left", "label": 1},
                   "right": {"name": "femur_right", "label": 2}}}))
    assert vocabulary.entry("femur_right").description == "the bone in the right thigh"
    assert vocabulary.entry("femur_left").display == "left femur"
    assert vocabulary.resolve("right thigh bone") == "femur_right"


def test_short_forms_said_in_theatre_resolve(vocabulary):
    assert vocabulary.resolve("left subclavian") == "subclavian_artery_left"
    assert vocabulary.resolve("subclavians") == "subclavian_arteries"
    assert vocabulary.resolve("right suprarenal") == "adrenal_gland_right"
