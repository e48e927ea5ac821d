import numpy as np
import pytest

from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.structure import (LocalisedStructure, OrientedBox, box_precision_recall,
                                             oriented_box_from_points)
from fluorosam_ros.geometry.transforms import rotation_about_axis


def _rotated_box_points(rng, half=(40.0, 15.0, 6.0)):
    rotation = rotation_about_axis([1.0, 2.0, -0.5], 0.7)
    local = rng.uniform(-1, 1, size=(20000, 3)) * half
    return local @ rotation.T + [5.0, -3.0, 12.0], rotation


def test_pca_box_recovers_orientation_and_extent(rng):
    points, rotation = _rotated_box_points(rng)
    box = oriented_box_from_points(points)
    # axes (up to sign) are the rotated box's axes, longest first
    for k in range(3):
        assert abs(float(np.dot(box.axes_world[k], rotation[:, k]))) > 0.999
    np.testing.assert_allclose(box.half_extents_mm, [40.0, 15.0, 6.0], rtol=0.02)
    np.testing.assert_allclose(box.center_world, [5.0, -3.0, 12.0], atol=0.5)
    assert np.linalg.det(box.axes_world) > 0
    assert box.contains(points).all()


def test_box_precision_recall_known_overlaps():
    a = OrientedBox.axis_aligned([0, 0, 0], [10, 10, 10])
    assert box_precision_recall(a, a) == (1.0, 1.0)
    shifted = OrientedBox.axis_aligned([5, 0, 0], [15, 10, 10])
    precision, recall = box_precision_recall(shifted, a)
    assert precision == pytest.approx(0.5, abs=0.03) and recall == pytest.approx(0.5, abs=0.03)
    big = OrientedBox.axis_aligned([-5, -5, -5], [15, 15, 15])  # 8x the volume, contains a
    precision, recall = box_precision_recall(big, a)
    assert precision == pytest.approx(1 / 8, abs=0.02) and recall == pytest.approx(1.0)


def test_localised_structure_rejects_bad_points():
    with pytest.raises(PlanningInputError):
        LocalisedStructure.from_points("x", "image", np.zeros((0, 3)), 1.0, 1.0)
    with pytest.raises(PlanningInputError, match="NaN"):
        LocalisedStructure.from_points("x", "image", np.array([[0.0, np.nan, 0.0]]), 1.0, 1.0)
    with pytest.raises(PlanningInputError, match="orthonormal"):
        OrientedBox(np.zeros(3), np.ones((3, 3)), np.ones(3))
