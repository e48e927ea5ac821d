from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.data.groundtruth import (
    CoverageRule,
    group_masks,
    merge,
    pack_masks,
    structure_masks,
    unpack_masks,
)
from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState


@pytest.fixture(scope="module")
def render(default_renderer, default_patient):
    state = CArmState(CArmConfig.for_supine_patient(mirror_columns=True).with_image_size(128),
                      CArmPose(tuple(default_patient.center_world), 10, 5))
    return default_renderer.render(state)


def test_structure_masks_are_the_renderers_path_lengths(render):
    masks = structure_masks(render.path_length_mm, render.structure_names, CoverageRule())
    assert len(masks) > 10
    for name, mask in zip(masks.names, masks.masks):
        np.testing.assert_array_equal(mask, render.mask(name))
        assert 0.001 <= mask.mean() <= 0.9
    dropped = set(render.structure_names) - set(masks.names)
    for name in dropped:
        fraction = render.mask(name).mean()
        assert fraction < 0.001 or fraction > 0.9


def test_group_masks_are_unions_of_their_members(render):
    groups = {"left_lung": ["lung_upper_lobe_left", "lung_lower_lobe_left"],
              "ribs_left": [f"rib_left_{i}" for i in range(1, 13)], "absent": ["femur_left"]}
    masks = group_masks(render.path_length_mm, render.structure_names, groups, CoverageRule())
    assert "absent" not in masks.names
    for group in ("left_lung", "ribs_left"):
        expected = np.zeros_like(masks.mask(group))
        for member in groups[group]:
            if member in render.structure_names:
                expected |= render.mask(member)
        np.testing.assert_array_equal(masks.mask(group), expected)


def test_coverage_rule_bounds():
    rule = CoverageRule()
    mask = np.zeros((100, 100), bool)
    assert not rule.keeps(mask)
    mask[0, :10] = True
    assert rule.keeps(mask)
    assert not CoverageRule().keeps(np.ones((100, 100), bool))


def test_packing_round_trip(rng, render):
    masks = merge(structure_masks(render.path_length_mm, render.structure_names, CoverageRule()))
    packed = pack_masks(masks.masks)
    assert packed.nbytes * 8 >= masks.masks.size and packed.nbytes < masks.masks.nbytes / 7
    np.testing.assert_array_equal(unpack_masks(packed, 128, 128), masks.masks)
    odd = rng.random((3, 7, 9)) > 0.5
    np.testing.assert_array_equal(unpack_masks(pack_masks(odd), 7, 9), odd)
