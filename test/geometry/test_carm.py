from __future__ import annotations

import math

import numpy as np
import pytest

from fluorosam_ros.geometry.carm import (
    CArmConfig,
    CArmGeometry,
    CArmPose,
    PoseError,
    supine_world_from_device,
)
from fluorosam_ros.geometry.transforms import angle_between_deg

SUPINE = CArmGeometry(CArmConfig.for_supine_patient())


def random_pose(rng, config: CArmConfig) -> CArmPose:
    return CArmPose(tuple(rng.uniform(-150, 150, 3)),
                    float(rng.uniform(config.min_alpha_deg, config.max_alpha_deg)),
                    float(rng.uniform(config.min_beta_deg, config.max_beta_deg)))


def test_source_sits_at_source_to_isocenter_distance_behind_isocenter(rng):
    for _ in range(20):
        pose = random_pose(rng, SUPINE.config)
        source = SUPINE.source_world(pose)
        ray = SUPINE.principal_ray_world(pose)
        np.testing.assert_allclose(source + 530.0 * ray, pose.isocenter_mm, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(ray), 1.0)


def test_isocenter_projects_to_the_detector_centre(rng):
    for _ in range(20):
        pose = random_pose(rng, SUPINE.config)
        uv = SUPINE.camera(pose).project(np.array(pose.isocenter_mm))[0]
        np.testing.assert_allclose(uv, [768.0, 768.0], atol=1e-6)


def test_magnification_at_isocenter_is_sdd_over_sid():
    pose = CArmPose((0, 0, 0), 10, 20)
    camera = SUPINE.camera(pose)
    # 10 mm at the isocenter, perpendicular to the principal ray
    ray = SUPINE.principal_ray_world(pose)
    perpendicular = np.cross(ray, [0, 0, 1.0])
    perpendicular /= np.linalg.norm(perpendicular)
    a, b = camera.project(np.stack([np.zeros(3), 10 * perpendicular]))
    assert np.linalg.norm(a - b) * 0.194 == pytest.approx(10 * 1020 / 530, rel=1e-9)


def test_supine_angle_semantics():
    """alpha = beta = 0 is the C-arm AP set-up; alpha > 0 RAO; beta > 0 CAU (LPS world)."""
    anterior, right, inferior = np.array([0, -1.0, 0]), np.array([-1.0, 0, 0]), np.array([0, 0, -1.0])
    ray = SUPINE.principal_ray_world(CArmPose((0, 0, 0), 0, 0))
    np.testing.assert_allclose(ray, anterior, atol=1e-12)
    assert np.dot(SUPINE.principal_ray_world(CArmPose((0, 0, 0), 30, 0)), right) > 0.4
    assert np.dot(SUPINE.principal_ray_world(CArmPose((0, 0, 0), 0, 30)), inferior) > 0.4
    lateral = SUPINE.principal_ray_world(CArmPose((0, 0, 0), 90, 0))
    np.testing.assert_allclose(lateral, right, atol=1e-12)


def test_supine_frame_is_a_proper_rotation():
    rotation = supine_world_from_device()[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_limits_reject_out_of_range_and_nan():
    assert SUPINE.limit_violations(CArmPose((0, 0, 0), 0, 0)) == []
    assert "alpha" in SUPINE.limit_violations(CArmPose((0, 0, 0), 111, 0))[0]
    assert "beta" in SUPINE.limit_violations(CArmPose((0, 0, 0), 0, -226))[0]
    assert "NaN" in SUPINE.limit_violations(CArmPose((0, float("nan"), 0), 0, 0))[0]
    assert "NaN" in SUPINE.limit_violations(CArmPose((0, 0, 0), float("inf"), 0))[0]
    assert "isocenter" in SUPINE.limit_violations(CArmPose((0, 0, 5000), 0, 0))[0]
    with pytest.raises(PoseError, match="alpha"):
        SUPINE.validate(CArmPose((0, 0, 0), -41, 0))


def test_limit_boundaries_are_inclusive():
    config = SUPINE.config
    for alpha in (config.min_alpha_deg, config.max_alpha_deg):
        for beta in (config.min_beta_deg, config.max_beta_deg):
            SUPINE.validate(CArmPose((0, 0, 0), alpha, beta))


def test_angles_for_direction_round_trip(rng):
    for _ in range(50):
        pose = random_pose(rng, SUPINE.config)
        direction = SUPINE.principal_ray_world(pose)
        alpha, beta = SUPINE.angles_for_direction(direction)
        achieved = SUPINE.principal_ray_world(CArmPose((0, 0, 0), alpha, beta))
        assert angle_between_deg(achieved, direction) < 1e-6


def test_look_at_feasible_view_is_exact(rng):
    for _ in range(30):
        point = rng.uniform(-100, 100, 3)
        target = random_pose(rng, SUPINE.config)
        direction = SUPINE.principal_ray_world(target)
        solution = SUPINE.look_at(point, direction)
        assert not solution.clamped
        assert solution.angle_error_deg < 1e-6
        SUPINE.validate(solution.pose)
        uv = SUPINE.camera(solution.pose).project(point)[0]
        np.testing.assert_allclose(uv, [768, 768], atol=1e-6)


def test_look_at_prefers_the_solution_nearest_the_current_pose():
    direction = SUPINE.principal_ray_world(CArmPose((0, 0, 0), 80, 10))
    near_zero = SUPINE.look_at((0, 0, 0), direction, current=CArmPose((0, 0, 0), 80, 10))
    near_other = SUPINE.look_at((0, 0, 0), direction, current=CArmPose((0, 0, 0), 100, 170))
    assert (near_zero.pose.alpha_deg, near_zero.pose.beta_deg) == pytest.approx((80, 10))
    # (100, 190) is the equivalent solution, inside the limits and nearer to (100, 170)
    assert (near_other.pose.alpha_deg, near_other.pose.beta_deg) == pytest.approx((100, 190))
    assert near_other.angle_error_deg < 1e-6


def test_look_at_infeasible_is_clamped_and_says_so():
    config = CArmConfig.for_supine_patient(min_alpha_deg=-10, max_alpha_deg=10,
                                           min_beta_deg=-10, max_beta_deg=10)
    geometry = CArmGeometry(config)
    lateral = np.array([-1.0, 0, 0])
    solution = geometry.look_at((0, 0, 0), lateral)
    assert solution.clamped
    assert solution.angle_error_deg == pytest.approx(80.0, abs=1e-6)
    geometry.validate(solution.pose)
    assert "outside the joint limits" in solution.message


def test_look_at_rejects_nan_point():
    with pytest.raises(PoseError):
        SUPINE.look_at((0, float("nan"), 0), (0, 1, 0))


def test_with_image_size_keeps_the_physical_projection(rng):
    binned = CArmGeometry(SUPINE.config.with_image_size(512))
    pose = random_pose(rng, SUPINE.config)
    points = rng.uniform(-100, 100, (10, 3))
    full = SUPINE.camera(pose).project(points)
    small = binned.camera(pose).project(points)
    np.testing.assert_allclose(small * 3, full, atol=1e-6)
    with pytest.raises(ValueError):
        SUPINE.config.with_image_size(512, 300)


def test_horizontal_offset_look_at_puts_point_on_principal_ray():
    geometry = CArmGeometry(CArmConfig.for_supine_patient(source_to_isocenter_horizontal_offset_mm=200.0))
    point = np.array([10.0, -20.0, 30.0])
    solution = geometry.look_at(point, (0.3, -1.0, 0.2))
    uv = geometry.camera(solution.pose).project(point)[0]
    np.testing.assert_allclose(uv, [768, 768], atol=1e-6)
    assert math.isclose(np.linalg.norm(geometry.viewpoint_world(solution.pose) - point), 0, abs_tol=1e-9)


def test_mirrored_columns_show_the_patient_left_on_the_image_right(default_patient):
    config = CArmConfig.for_supine_patient(mirror_columns=True).with_image_size(256)
    geometry = CArmGeometry(config)
    pose = CArmPose(tuple(default_patient.center_world), 0, 0)
    camera = geometry.camera(pose)
    left = camera.project(default_patient.structure_centroid_world("lung_upper_lobe_left"))[0]
    right = camera.project(default_patient.structure_centroid_world("lung_upper_lobe_right"))[0]
    apex = camera.project(default_patient.structure_centroid_world("vertebrae_T3"))[0]
    liver = camera.project(default_patient.structure_centroid_world("liver"))[0]
    assert left[0] > right[0]   # patient's left on the viewer's right, as on a radiograph
    assert apex[1] < liver[1]   # head up
    unmirrored = CArmGeometry(CArmConfig.for_supine_patient().with_image_size(256)).camera(pose)
    np.testing.assert_allclose(unmirrored.project(np.zeros(3))[0, 0], 256 - camera.project(np.zeros(3))[0, 0])
    np.testing.assert_allclose(camera.source_world, unmirrored.source_world, atol=1e-9)


def test_a_lateral_direction_keeps_the_image_upright():
    """At alpha = 90 deg beta only rolls the image; the solver must not pick it from rounding noise."""
    from fluorosam_ros.data.views import LEFT

    geometry = CArmGeometry(CArmConfig.for_supine_patient())
    for direction in (LEFT, LEFT + 1e-13):
        alpha, beta = geometry.angles_for_direction(direction)
        assert abs(abs(alpha) - 90.0) < 1e-6 and beta == 0.0
