import math

import numpy as np
import pytest
from control_scenes import box_mask, pose_at, sphere_mask

from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.structure import OrientedBox, box_precision_recall
from fluorosam_ros.control.visual_hull import (HullConfig, LocalisationError, PosedMask, closest_point_to_rays,
                                               visual_hull)
from fluorosam_ros.geometry.carm import CArmGeometry, CArmState
from fluorosam_ros.geometry.collimation import Collimation

CENTRE = np.array([12.0, -25.0, 40.0])
RADIUS = 30.0


def _sphere_views(geometry, angles, offset=(6.0, 4.0, -5.0)):
    views = []
    for alpha, beta in angles:
        camera = geometry.camera(pose_at(geometry, CENTRE + offset, alpha, beta))
        views.append(PosedMask(sphere_mask(camera, CENTRE, RADIUS), camera))
    return views


def test_sphere_from_two_orthogonal_views(small_carm, rng):
    geometry = CArmGeometry(small_carm)
    hull = visual_hull(_sphere_views(geometry, [(0, 0), (90, 0)]))
    structure = hull.structure("sphere")
    # the hull of a sphere is symmetric about it: the centroid is the centre (up to voxels/perspective)
    assert np.linalg.norm(structure.centroid_world - CENTRE) < 1.5
    # conservative: every point of the sphere is inside the hull
    directions = rng.normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    inside = CENTRE + directions * RADIUS * rng.uniform(0, 1, (4000, 1)) ** (1 / 3)
    voxel = np.floor((inside - hull.world_from_grid[:3, 3]) / hull.voxel_size_mm + 0.5).astype(int)
    ok = np.all((voxel >= 0) & (voxel < hull.occupancy.shape), axis=1)
    assert ok.all() and hull.occupancy[tuple(voxel.T)].mean() > 0.995
    # two cones' intersection is larger than the sphere (a bicylinder is 1.27x for parallel rays)
    ratio = hull.volume_mm3 / (4 / 3 * math.pi * RADIUS ** 3)
    assert 1.0 < ratio < 1.6
    assert min(hull.silhouette_dice) > 0.95 and hull.confidence > 0.9
    assert hull.max_view_angle_deg == pytest.approx(90.0, abs=1e-6)


def test_three_views_tighten_the_hull_of_a_box(small_carm):
    geometry = CArmGeometry(small_carm)
    box_min, box_max = np.array([-30.0, -20.0, -45.0]), np.array([30.0, 20.0, 45.0])
    volumes = []
    for angles in ([(0, 0), (90, 0)], [(0, 0), (90, 0), (30, 40)]):
        views = []
        for alpha, beta in angles:
            camera = geometry.camera(pose_at(geometry, [3.0, -2.0, 4.0], alpha, beta))
            views.append(PosedMask(box_mask(camera, box_min, box_max), camera))
        hull = visual_hull(views, HullConfig(voxel_size_mm=2.0))
        structure = hull.structure("box")
        assert np.linalg.norm(structure.centroid_world) < 1.5
        truth = OrientedBox.axis_aligned(box_min, box_max)
        precision, recall = box_precision_recall(structure.box, truth)
        assert recall > 0.97 and precision > 0.6  # cones overshoot the corners
        volumes.append(hull.volume_mm3)
    # a third view can only remove voxels, and removes those the first two could not see
    assert volumes[1] < volumes[0]


def test_inconsistent_views_lower_the_confidence(small_carm):
    geometry = CArmGeometry(small_carm)
    good = _sphere_views(geometry, [(0, 0), (90, 0)])
    # the second mask from a pose that is 25 mm off (a wrong pose / wrong segmentation)
    wrong_camera = good[1].camera
    shifted_mask = sphere_mask(wrong_camera, CENTRE + [0.0, 0.0, 25.0], RADIUS)
    bad = [good[0], PosedMask(shifted_mask, wrong_camera)]
    good_hull, bad_hull = visual_hull(good), visual_hull(bad)
    assert bad_hull.confidence < good_hull.confidence - 0.2
    assert min(bad_hull.silhouette_dice) < 0.8


def test_collimated_views_do_not_carve_outside_the_field(small_carm):
    geometry = CArmGeometry(small_carm)
    views = _sphere_views(geometry, [(0, 0), (90, 0)])
    # collimate the first view to the upper half: the sphere's lower half is unseen there
    camera = views[0].camera
    half = Collimation.rectangle(0, 0, camera.sensor_width, camera.sensor_height // 2)
    state = CArmState(small_carm, pose_at(geometry, CENTRE + [6.0, 4.0, -5.0], 0, 0), half)
    collimated = PosedMask.from_state(views[0].mask & half.field_mask(camera.sensor_width, camera.sensor_height),
                                      state)
    assert collimated.truncated()
    hull = visual_hull([collimated, views[1]], HullConfig(min_views_seen=1))
    full = visual_hull(views, HullConfig(min_views_seen=1))
    # the unseen half is bounded only by the other view: more volume, never less
    assert hull.volume_mm3 >= full.volume_mm3
    assert 0 in hull.truncated_views and hull.confidence <= 0.5 * max(hull.silhouette_dice) + 1e-9


def test_failures_are_explicit(small_carm):
    geometry = CArmGeometry(small_carm)
    views = _sphere_views(geometry, [(0, 0), (90, 0)])
    with pytest.raises(LocalisationError, match=">= 2 posed views"):
        visual_hull(views[:1])
    with pytest.raises(LocalisationError, match="deg apart"):
        visual_hull(_sphere_views(geometry, [(0, 0), (4, 0)]))
    empty = PosedMask(np.zeros_like(views[0].mask), views[0].camera)
    with pytest.raises(LocalisationError, match="empty"):
        visual_hull([views[0], empty])
    # two masks whose back-projections miss each other
    elsewhere = PosedMask(sphere_mask(views[1].camera, CENTRE + [0.0, 0.0, 65.0], 10.0), views[1].camera)
    with pytest.raises(LocalisationError, match="do not intersect"):
        visual_hull([views[0], elsewhere])
    with pytest.raises(PlanningInputError, match="shape"):
        PosedMask(np.zeros((10, 10), bool), views[0].camera)
    with pytest.raises(PlanningInputError, match="NaN"):
        PosedMask(np.full(views[0].mask.shape, np.nan), views[0].camera)


def test_closest_point_to_rays():
    point = closest_point_to_rays(np.array([[0.0, 0, 0], [10.0, -5, 0]]), np.array([[1.0, 0, 0], [0.0, 1, 0]]))
    np.testing.assert_allclose(point, [10.0, 0.0, 0.0], atol=1e-9)


STRUCTURES = ["heart", "vertebrae_L1", "kidney_left", "spleen"]


def test_real_anatomy_centroid_from_two_views(default_patient, patient_carm, render_masks, truth_prior,
                                              record_figure):
    """Ground-truth masks of the default CT in AP and lateral, each centred (by the pose solver)
    on the structure; the hull's centroid and box against the labels. The hull of two views
    overshoots an asymmetric organ's volume 2-3x, which biases its centroid (heart ~10 mm)."""
    from fluorosam_ros.control.views import solve_view

    geometry = CArmGeometry(patient_carm)
    errors, precisions, recalls = [], [], []
    for name in STRUCTURES:
        truth = truth_prior.localise(name)
        views = []
        for view in ("ap", "lateral"):
            pose = solve_view(truth, view, geometry).pose
            state = CArmState(patient_carm, pose)
            views.append(PosedMask(render_masks(state, [name])[name], state.camera()))
        hull = visual_hull(views)
        estimate = hull.structure(name)
        error = float(np.linalg.norm(estimate.centroid_world - default_patient.structure_centroid_world(name)))
        precision, recall = box_precision_recall(estimate.box, truth.box)
        errors.append(error)
        precisions.append(precision)
        recalls.append(recall)
        assert not hull.truncated_views, f"{name} was cut off by the field"
        assert hull.confidence > 0.7, name
        assert error < 12.0, f"{name}: centroid error {error:.1f} mm"
        assert recall > 0.85, f"{name}: box recall {recall:.2f}"
    record_figure(f"visual hull, AP + lateral, GT masks 128^2, {len(STRUCTURES)} structures: centroid "
                  f"error mean {np.mean(errors):.1f} mm (max {np.max(errors):.1f}); box precision "
                  f"{np.mean(precisions):.2f}, recall {np.mean(recalls):.2f} (IPCAI 2025: 51.7 mm, 0.26/0.70)")
