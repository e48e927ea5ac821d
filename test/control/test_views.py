import numpy as np
import pytest
from control_scenes import pose_at

from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.structure import LocalisedStructure
from fluorosam_ros.control.views import (ViewPlanningConfig, anatomy_views, named_view, parse_view,
                                         pivot_from_mask, propose_second_view, relative_move, solve_view)
from fluorosam_ros.data.views import ANTERIOR, LEFT, SUPERIOR, standard_families
from fluorosam_ros.geometry.carm import CArmConfig, CArmGeometry, CArmPose
from fluorosam_ros.geometry.transforms import angle_between_deg


def _blob(centre=(20.0, -30.0, -150.0), half=(30.0, 20.0, 15.0), name="blob", rng=None) -> LocalisedStructure:
    rng = rng or np.random.default_rng(0)
    points = np.asarray(centre) + rng.uniform(-1, 1, (3000, 3)) * half
    return LocalisedStructure.from_points(name, "image", points, 2.0, 1.0)


def test_parse_view_names():
    assert parse_view("LAO 30") == ("oblique_left", 30.0)
    assert parse_view("caudal tilt 15°") == ("caudal", 15.0)
    assert parse_view("tilt cranial 20 degrees") == ("cranial", 20.0)
    assert parse_view("Lateral view") == ("lateral", None)
    assert parse_view("right anterior oblique") == ("oblique_right", None)
    for bad in ("sideways", "", "lao 120"):
        with pytest.raises(PlanningInputError):
            parse_view(bad)


def test_named_view_directions_follow_the_patient_frame():
    assert np.allclose(named_view("ap").direction_world, ANTERIOR)
    assert np.allclose(named_view("pa").direction_world, -ANTERIOR)
    lateral = named_view("lateral")
    assert lateral.reversible and abs(np.dot(lateral.direction_world, LEFT)) == pytest.approx(1.0)
    lao = named_view("lao 25").direction_world
    assert np.dot(lao, LEFT) > 0 and angle_between_deg(lao, ANTERIOR) == pytest.approx(25.0)
    assert np.dot(named_view("rao").direction_world, LEFT) < 0
    assert np.dot(named_view("cranial 15").direction_world, SUPERIOR) > 0
    assert angle_between_deg(named_view("caudal 15").direction_world, ANTERIOR) == pytest.approx(15.0)
    with pytest.raises(PlanningInputError, match="structure"):
        named_view("en face")
    # as an Intent gives it: the view name, and the angle apart (NaN = not given)
    assert named_view("caudal", angle_deg=12.0).angle_deg == 12.0
    assert named_view("caudal", angle_deg=float("nan")).angle_deg == ViewPlanningConfig().tilt_angle_deg


def test_anatomy_table_comes_from_the_data_engine_families():
    families = {f.name: f for f in standard_families()}
    spine = anatomy_views("vertebrae_L1")
    assert spine["ap"].family == "spine_ap_lumbar" and spine["lateral"].family == "spine_lateral_lumbar"
    # the most specific family wins: humerus AP, not the shoulder's tilted AP
    assert anatomy_views("humerus_left")["ap"].family == "humerus_ap_left"
    sternum = anatomy_views("sternum")["oblique_right"]
    assert np.allclose(sternum.direction_world, families["sternum_oblique"].direction)
    assert anatomy_views("not_a_structure") == {}
    # pelvis: the family's 40 deg; the inlet line runs anterior-superior (perpendicular to the
    # pelvic brim), so from under the table the inlet beam tilts cranially, the outlet caudally
    pelvis = anatomy_views("hip_left")
    assert pelvis["inlet"].angle_deg == pytest.approx(40.0) and pelvis["outlet"].angle_deg == pytest.approx(40.0)
    assert np.dot(pelvis["inlet"].direction_world, SUPERIOR) > 0 > np.dot(pelvis["outlet"].direction_world, SUPERIOR)
    # the family angle is used when the request gives none; an explicit angle wins
    assert named_view("oblique_right", _blob(name="sternum")).angle_deg == pytest.approx(25.0)
    assert named_view("oblique_right 40", _blob(name="sternum")).angle_deg == 40.0


def test_elongated_structures_are_viewed_across_their_long_axis():
    # a rod along (superior + anterior): AP turns to cross it
    axis = np.array([0.0, -1.0, 2.0]) / np.sqrt(5)
    rng = np.random.default_rng(1)
    points = np.outer(rng.uniform(-80, 80, 4000), axis) + rng.normal(0, 5, (4000, 3))
    rod = LocalisedStructure.from_points("rod", "image", points, 2.0, 1.0)
    ap = named_view("ap", rod)
    assert abs(np.dot(ap.direction_world, axis)) < 0.05
    end_on = named_view("end on", rod)
    assert abs(np.dot(end_on.direction_world, axis)) > 0.99


def test_pose_solver_centres_and_covers(small_carm):
    geometry = CArmGeometry(small_carm)
    blob = _blob()
    for view in ("ap", "lateral", "rao 30", "caudal 20"):
        solution = solve_view(blob, view, geometry)
        geometry.validate(solution.pose)
        assert solution.feasible and not solution.reasons
        assert solution.angle_error_deg < 1e-6
        assert solution.centring_error_px < 0.5 and solution.centring_error_mm < 0.5
        assert solution.coverage == 1.0
        # the margin holds: the projected blob spans <= 1/fit_margin of the detector (+1 px)
        uv = geometry.camera(solution.pose).project(blob.points_world)
        span = np.abs(uv - small_carm.sensor_width_px / 2).max() * 2
        assert span <= small_carm.sensor_width_px / ViewPlanningConfig().fit_margin + 1.0
    # a larger structure must sit further from the source (smaller magnification)
    big = _blob(half=(80.0, 60.0, 40.0))
    assert solve_view(big, "ap", geometry).magnification < solve_view(blob, "ap", geometry).magnification


def test_pose_solver_beyond_the_joint_limits(small_carm):
    geometry = CArmGeometry(small_carm)
    blob = _blob()
    # LAO 60 needs alpha = -60 (< -40): the nearest pose is returned, flagged, with the residual
    solution = solve_view(blob, "lao 60", geometry)
    geometry.validate(solution.pose)
    assert solution.clamped and not solution.feasible
    assert solution.pose.alpha_deg == pytest.approx(small_carm.min_alpha_deg)
    assert solution.angle_error_deg == pytest.approx(20.0, abs=0.5)
    assert any("joint limits" in reason for reason in solution.reasons)
    # at the limit exactly (LAO 40) it is feasible
    assert solve_view(blob, "lao 40", geometry).feasible
    # isocenter travel: the target lies outside what the isocenter can reach
    from dataclasses import replace
    tight = CArmGeometry(replace(small_carm, isocenter_min_mm=(-50.0,) * 3, isocenter_max_mm=(50.0,) * 3))
    far = _blob(centre=(200.0, 0.0, 0.0))
    solution = solve_view(far, "ap", tight)
    tight.validate(solution.pose)
    assert not solution.feasible and solution.centring_error_mm > 100.0
    assert any("off the central ray" in reason for reason in solution.reasons)
    with pytest.raises(PlanningInputError):
        solve_view(blob, "ap", geometry, current=CArmPose((np.nan, 0.0, 0.0)))


def test_relative_moves_stay_within_limits(small_carm):
    from dataclasses import replace

    config = replace(small_carm, isocenter_min_mm=(-300.0,) * 3, isocenter_max_mm=(300.0,) * 3)
    geometry = CArmGeometry(config)
    start = CArmPose((0.0, 0.0, 0.0), 0.0, 0.0)
    moved = relative_move(start, geometry, "move", "left", 25.0)
    np.testing.assert_allclose(np.subtract(moved.pose.isocenter_mm, start.isocenter_mm), 25.0 * LEFT)
    assert not moved.clamped
    # image-relative: "up" moves towards what is displayed at the top of the image
    camera = geometry.camera(start)
    up = relative_move(start, geometry, "move", "up", 30.0)
    before = camera.project(np.array(up.pose.isocenter_mm))[0]
    assert before[1] < camera.sensor_height / 2 - 5
    # along the beam ("in": towards the detector) and NaN = the configured step
    deeper = relative_move(start, geometry, "move", "in", float("nan"))
    np.testing.assert_allclose(np.subtract(deeper.pose.isocenter_mm, start.isocenter_mm),
                               ViewPlanningConfig().move_step_mm * geometry.principal_ray_world(start))
    far = relative_move(start, geometry, "move", "superior", 1000.0)
    assert far.clamped and far.pose.isocenter_mm[2] == pytest.approx(300.0) and "isocenter" in far.message
    # rotate towards LAO: beam gains a left component, pivot stays on the ray
    pivot = np.array([10.0, -20.0, 5.0])
    here = pose_at(geometry, pivot, 0.0, 0.0)
    lao = relative_move(here, geometry, "rotate", "left", 20.0, pivot_world=pivot)
    ray = geometry.principal_ray_world(lao.pose)
    assert np.dot(ray, LEFT) > 0.3 and angle_between_deg(ray, ANTERIOR) == pytest.approx(20.0)
    source = geometry.source_world(lao.pose)
    offset = pivot - source
    assert np.linalg.norm(offset - np.dot(offset, ray) * ray) < 1e-6
    beyond = relative_move(here, geometry, "rotate", "lao", 70.0, pivot_world=pivot)
    assert beyond.clamped and beyond.pose.alpha_deg == pytest.approx(config.min_alpha_deg)
    geometry.validate(beyond.pose)
    cranial = relative_move(here, geometry, "tilt", "cranial", 15.0)
    assert np.dot(geometry.principal_ray_world(cranial.pose), SUPERIOR) == pytest.approx(np.sin(np.radians(15.0)))
    # zoom: magnification at the target scales by the factor, target stays centred
    zoomed = relative_move(here, geometry, "zoom", "in", 1.2, pivot_world=pivot)
    m0 = config.source_to_detector_distance_mm / geometry.camera(here).depth_mm(pivot)[0]
    m1 = config.source_to_detector_distance_mm / geometry.camera(zoomed.pose).depth_mm(pivot)[0]
    assert m1 / m0 == pytest.approx(1.2) and not zoomed.clamped
    uv = geometry.camera(zoomed.pose).project(pivot)[0]
    assert np.allclose(uv, [config.sensor_width_px / 2, config.sensor_height_px / 2], atol=1e-6)
    too_much = relative_move(here, geometry, "zoom", "in", 3.0, pivot_world=pivot)
    assert too_much.clamped and too_much.details["achieved_factor"] < 3.0
    for action, direction, amount in (("move", "sideways", 1.0), ("spin", "left", 1.0), ("move", "left", np.inf),
                                      ("zoom", "in", -2.0), ("tilt", "left", 5.0)):
        with pytest.raises(PlanningInputError):
            relative_move(here, geometry, action, direction, amount)


def test_second_view_is_far_enough_and_keeps_the_target(small_carm):
    geometry = CArmGeometry(small_carm)
    pivot = np.array([15.0, -10.0, 20.0])
    first = pose_at(geometry, pivot, 0.0, 0.0)
    second = propose_second_view(first, geometry, pivot)
    geometry.validate(second.pose)
    assert second.separation_deg == pytest.approx(90.0, abs=0.1)
    ray = geometry.principal_ray_world(second.pose)
    offset = pivot - geometry.source_world(second.pose)
    assert np.linalg.norm(offset - np.dot(offset, ray) * ray) < 1e-6
    # near the alpha limit, +90 is impossible: it goes the other way or tilts instead
    near_limit = pose_at(geometry, pivot, 100.0, 0.0)
    other = propose_second_view(near_limit, geometry, pivot)
    geometry.validate(other.pose)
    assert other.separation_deg > 60.0
    # from a single mask: the pivot lies on the ray through the mask's centroid
    from control_scenes import sphere_mask
    camera = geometry.camera(first)
    mask = sphere_mask(camera, pivot + [30.0, 0.0, 0.0], 15.0)
    guess = pivot_from_mask(mask, camera, geometry, first)
    assert abs(guess[0] - (pivot[0] + 30.0)) < 3.0  # lateral position right, depth = isocenter's


def test_a_near_lateral_view_keeps_the_image_upright():
    """A beam 1.5 deg off the lateral must not roll the image by ~90 deg (beta) for that last
    1.5 deg: the upright lateral within the tolerance is taken."""
    from fluorosam_ros.control.views import UPRIGHT_TOLERANCE_DEG, NamedView
    from fluorosam_ros.data.views import tilted

    geometry = CArmGeometry(CArmConfig.for_supine_patient())
    structure = LocalisedStructure.from_points("blob", "test", np.random.default_rng(0).normal(0, 20, (500, 3)),
                                               2.0, 1.0)
    # a tilt towards the head leaves the orbital plane: exactly, beta would turn by ~90 deg
    direction = tilted(LEFT, SUPERIOR, 1.5)
    solution = solve_view(structure, NamedView("lateral", direction, 0.0, True), geometry, CArmPose())
    assert abs(abs(solution.pose.alpha_deg) - 90.0) < 1e-6 and solution.pose.beta_deg == 0.0
    assert solution.angle_error_deg <= UPRIGHT_TOLERANCE_DEG
    # 10 deg off the lateral is served exactly
    direction = tilted(LEFT, SUPERIOR, 10.0)
    solution = solve_view(structure, NamedView("lateral", direction, 0.0, True), geometry, CArmPose())
    assert solution.angle_error_deg < 1e-3
