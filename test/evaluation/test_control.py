"""`fluorosam evaluate-control`: the request set, the ground-truth metrics on hand-made cases,
and a small end-to-end run with ground-truth masks on the default patient."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fluorosam_ros.control.config import PlannerConfig
from fluorosam_ros.control.structure import LocalisedStructure, OrientedBox, box_precision_recall
from fluorosam_ros.data.views import ANTERIOR, LEFT
from fluorosam_ros.evaluation.control import (
    MIN_VOXELS, ControlEvalConfig, ControlEvaluator, ControlRequest, RequestRecord, SuccessCriteria,
    carm_config, centring_fraction, judge, label_counts, point_coverage, request_set, structure_voxels, summarise,
    true_coverage, view_angle_error)
from fluorosam_ros.geometry.carm import CArmGeometry, CArmPose, CArmState
from fluorosam_ros.geometry.collimation import Collimation


@pytest.fixture(scope="module")
def requests(default_patient):
    return request_set(default_patient, 50, seed=0)


@pytest.fixture(scope="module")
def state(default_patient) -> CArmState:
    """AP at the CT's centre, 128^2."""
    config = carm_config(default_patient, 128)
    pose = CArmGeometry(config).look_at(default_patient.center_world, ANTERIOR).pose
    return CArmState(config, pose)


def _sphere(centre, radius_mm: float = 30.0, spacing_mm: float = 3.0) -> LocalisedStructure:
    steps = np.arange(-radius_mm, radius_mm + 1e-9, spacing_mm)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    points = grid[np.linalg.norm(grid, axis=1) <= radius_mm] + np.asarray(centre)
    return LocalisedStructure.from_points("ball", "twin", points, spacing_mm, 1.0)


# ---- the request set ------------------------------------------------------------------------
def test_request_set_spans_structures_views_and_start_poses(default_patient, requests):
    assert len(requests) == 50
    structures = {r.structure for r in requests}
    assert len(structures) >= 15
    counts = label_counts(default_patient)
    assert all(structure_voxels(default_patient, name, counts) >= MIN_VOXELS for name in structures)
    assert "lung_left" in structures  # vocabulary groups as well as labels
    assert {r.view for r in requests} >= {"ap", "lateral", "oblique_left", "oblique_right", "cranial", "caudal", ""}
    geometry = CArmGeometry(carm_config(default_patient))
    for request in requests:
        assert not geometry.limit_violations(request.start_pose)
        assert abs(request.alpha_deg) <= 30 and abs(request.beta_deg) <= 30
        assert (request.translation_mm, request.rotation_deg) == (15.0, 5.0)
    assert len({r.error_seed for r in requests}) == 50  # a fresh registration error per request


def test_request_set_is_deterministic_and_nested(default_patient, requests):
    assert request_set(default_patient, 50, seed=0) == requests
    assert request_set(default_patient, 10, seed=0) == requests[:10]
    assert request_set(default_patient, 50, seed=1) != requests


def test_structures_outside_the_ct_are_not_requested(default_patient):
    assert structure_voxels(default_patient, "femur_left") == 0
    assert structure_voxels(default_patient, "no_such_thing") == 0
    chosen = request_set(default_patient, 6, structures=("femur_left", "heart", "liver"))
    assert {r.structure for r in chosen} == {"heart", "liver"}


# ---- metrics on hand-made cases -------------------------------------------------------------
def test_judge_needs_every_criterion():
    assert judge(0.05, 0.99, 1.0) == (True, [])
    assert judge(0.10, 0.95, 5.0) == (True, [])  # the thresholds themselves pass
    assert judge(0.11, 0.99, 1.0) == (False, ["off_centre"])
    assert judge(0.05, 0.90, 1.0) == (False, ["coverage"])
    assert judge(0.05, 0.99, 6.0) == (False, ["view_angle"])
    assert judge(math.nan, math.nan, math.nan) == (False, ["off_centre", "coverage", "view_angle"])
    assert judge(0.15, 0.99, 1.0, SuccessCriteria(max_centring_fraction=0.2))[0]


def test_centring_fraction_of_a_point_off_the_central_ray(state):
    geometry, pose = state.geometry, state.pose
    iso = geometry.viewpoint_world(pose)
    assert centring_fraction(state, iso) == pytest.approx(0.0, abs=1e-6)
    camera = state.camera()
    px_per_mm = abs(camera.intrinsic[0, 0]) / float(camera.depth_mm(iso)[0])
    side = np.cross(geometry.principal_ray_world(pose), LEFT + ANTERIOR)
    side /= np.linalg.norm(side)  # perpendicular to the beam: same depth as the isocenter
    expected = 20.0 * px_per_mm / state.config.sensor_width_px
    assert centring_fraction(state, iso + 20.0 * side) == pytest.approx(expected, rel=1e-3)
    source = geometry.source_world(pose)
    behind = source - 100.0 * geometry.principal_ray_world(pose)
    assert centring_fraction(state, behind) == math.inf


def test_coverage_of_the_true_mask_and_points(state):
    mask = np.zeros((128, 128), dtype=bool)
    mask[40:60, 40:80] = True
    field = state.with_collimation(Collimation.rectangle(30, 30, 90, 90))
    assert true_coverage(mask, field) == 1.0
    half = state.with_collimation(Collimation.rectangle(0, 0, 60, 128))  # cuts cols 60..79
    assert true_coverage(mask, half) == pytest.approx(0.5)
    assert true_coverage(np.zeros_like(mask), field) == 0.0  # a target out of the image is not covered
    iso = state.geometry.viewpoint_world(state.pose)
    ball = _sphere(iso, 20.0).points_world
    assert point_coverage(ball, state) == 1.0
    corner = state.with_collimation(Collimation.rectangle(0, 0, 10, 10))
    assert point_coverage(ball, corner) == 0.0


def test_view_angle_error_against_the_true_structure(state):
    geometry = state.geometry
    iso = geometry.viewpoint_world(state.pose)
    ball = _sphere(iso)
    planner = PlannerConfig()
    assert view_angle_error("ap", ball, state, state, planner) == pytest.approx(0.0, abs=1e-6)
    assert view_angle_error("", ball, state, state, planner) == pytest.approx(0.0, abs=1e-6)
    # the beam towards the patient's right is reachable (alpha 90); towards the left is not
    lateral = CArmState(state.config, geometry.look_at(iso, -LEFT).pose)
    assert view_angle_error("lateral", ball, state, lateral, planner) == pytest.approx(0.0, abs=1e-6)  # reversible
    assert view_angle_error("lateral_left", ball, state, lateral, planner) == pytest.approx(180.0, abs=1e-6)
    assert view_angle_error("ap", ball, state, lateral, planner) == pytest.approx(90.0, abs=1e-6)
    tilted = CArmState(state.config, CArmPose(state.pose.isocenter_mm, state.pose.alpha_deg + 10.0,
                                              state.pose.beta_deg))
    assert view_angle_error("", ball, state, tilted, planner) == pytest.approx(10.0, abs=1e-6)
    oblique = view_angle_error("oblique_left", ball, state, state, planner)
    assert oblique == pytest.approx(30.0, abs=1e-6)  # LAO 30 (the config's default) from AP


def test_box_precision_and_recall_sanity():
    truth = OrientedBox.axis_aligned([0, 0, 0], [40, 40, 40])
    assert box_precision_recall(truth, truth) == pytest.approx((1.0, 1.0))
    shifted = OrientedBox.axis_aligned([20, 0, 0], [60, 40, 40])
    assert box_precision_recall(shifted, truth) == pytest.approx((0.5, 0.5), abs=0.03)
    inner = OrientedBox.axis_aligned([0, 0, 0], [20, 20, 20])
    precision, recall = box_precision_recall(inner, truth)
    assert precision == pytest.approx(1.0) and recall == pytest.approx(0.125, abs=0.02)


def _record(success: bool, loop_success: bool, failed=(), error=5.0, area=0.3, covered=1.0) -> RequestRecord:
    return RequestRecord(0, "truth", "heart", "ap", success, list(failed), loop_success, "", "", 1.0, 0.01,
                         covered, covered, 0.0, error, 0.8, 0.9, 15.0, 0.6, 0.6, area, 2, 1.5, 0.5)


def test_summary_counts_successes_failures_and_false_claims():
    records = [_record(True, True), _record(False, True, ["coverage"], area=0.9, covered=0.5),
               _record(False, False, ["loop:infeasible"], error=math.nan, area=math.nan, covered=math.nan),
               _record(True, False, error=15.0)]
    s = summarise(records)
    assert s["n"] == 4 and s["success"] == 0.5 and s["loop_reported_success"] == 0.5
    assert s["loop_success_rejected_by_truth"] == 1 and s["loop_failure_but_truth_success"] == 1
    assert s["centroid_error_mm"] == pytest.approx(25.0 / 3) and s["localised"] == 3
    assert s["collimated_area_fraction_at_coverage"] == pytest.approx(0.3)
    assert s["coverage_ok"] == 0.5
    assert s["failures"] == {"coverage": 1, "loop:infeasible": 1}
    assert s["compute_excluding_render_s"] == pytest.approx(1.0)


def test_cli_refuses_an_unknown_segmenter():
    from fluorosam_ros.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate-control", "--segmenters", "oracle"])


# ---- end to end -----------------------------------------------------------------------------
def test_ground_truth_masks_succeed_on_easy_requests(default_patient, default_renderer, tmp_path):
    """Three requests starting over the target (AP, target in view), ground-truth masks, 128^2."""
    from fluorosam_ros.control.twin_prior import TwinPrior
    from fluorosam_ros.twin.detector import DetectorModel

    truth = TwinPrior(default_patient)
    easy = []
    for index, (name, view) in enumerate([("heart", "ap"), ("spleen", ""), ("liver", "oblique_left")]):
        centre = truth.localise(name).centroid_world
        pose = CArmGeometry(carm_config(default_patient)).look_at(centre + [10.0, 0.0, 15.0], ANTERIOR).pose
        easy.append(ControlRequest(index, name, view, tuple(pose.isocenter_mm), pose.alpha_deg, pose.beta_deg,
                                   error_seed=index))
    config = ControlEvalConfig(requests=3, image_size=128, segmenters=("truth",))
    report = ControlEvaluator(default_patient, default_renderer, DetectorModel(), config).run(easy, progress=False)
    assert len(report.records) == 3
    for record in report.records:
        values = [record.centring_fraction, record.coverage, record.view_angle_error_deg, record.centroid_error_mm,
                  record.box_precision, record.box_recall, record.collimated_area_fraction, record.wall_s]
        assert all(math.isfinite(v) for v in values), record
        assert record.prior_centroid_error_mm == pytest.approx(15.0, abs=1e-6)
        assert 0.0 < record.collimated_area_fraction <= 1.0 and record.acquisitions >= 2
    assert sum(r.success for r in report.records) >= 2
    summary = report.summary()["truth"]
    assert summary["centroid_error_mm"] < 15.0  # fusion corrected the injected 15 mm
    table = report.table()
    assert "IPCAI 2025" in table and "ground-truth masks" in table
    saved = json.loads(report.save(tmp_path / "control.json").read_text())
    assert len(saved["records"]) == 3 and saved["summary"]["truth"]["n"] == 3
