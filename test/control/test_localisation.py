"""The core loop the planner node will run, without ROS: one image -> a second view -> localise
-> plan the requested view -> collimate -> acquire -> check."""

import time

import numpy as np
import pytest

from fluorosam_ros.control.collimation import check_coverage, collimate_structure
from fluorosam_ros.control.localisation import (LocalisationError, PosedMask, localise, pivot_from_mask,
                                                propose_second_view)
from fluorosam_ros.control.registration import RegistrationConfig
from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.twin_prior import RegistrationErrorConfig, TwinPrior
from fluorosam_ros.control.views import solve_view
from fluorosam_ros.geometry.carm import CArmGeometry, CArmState


def test_core_loop_from_one_image_to_a_collimated_view(default_patient, patient_carm, render_masks,
                                                       record_figure):
    name, request = "kidney_left", "lateral"
    geometry = CArmGeometry(patient_carm)
    truth_centroid = default_patient.structure_centroid_world(name)
    # start: an AP image roughly over the kidney (40 mm off), the structure somewhere in it
    start = CArmState(patient_carm, geometry.pose_through_point(truth_centroid + [40.0, 0.0, 30.0], 0.0, 0.0))
    first = PosedMask(render_masks(start, [name])[name], start.camera())
    assert not first.empty
    with pytest.raises(LocalisationError, match="second view"):
        localise("image", name, [first])
    pivot = pivot_from_mask(first.mask, first.camera, geometry, start.pose)
    second_view = propose_second_view(start.pose, geometry, pivot)
    second_state = CArmState(patient_carm, second_view.pose)
    second = PosedMask(render_masks(second_state, [name])[name], second_state.camera())

    prior = TwinPrior.with_injected_error(default_patient, RegistrationErrorConfig(seed=7), name)
    results = {}
    for mode in ("image", "twin", "fused"):
        structure = localise(mode, name, [first, second], prior,
                             registration_config=RegistrationConfig(max_points=4000))
        results[mode] = float(np.linalg.norm(structure.centroid_world - truth_centroid))
    assert results["image"] < 10.0 and results["fused"] < 3.0
    assert results["twin"] == pytest.approx(15.0, abs=1.5)

    cpu_start = time.process_time()  # CPU, not wall: the test machine may be loaded
    structure = localise("fused", name, [first, second], prior)
    solution = solve_view(structure, request, geometry, current=second_view.pose)
    target = CArmState(patient_carm, solution.pose)
    plan = collimate_structure(structure, target)
    planning_cpu_s = time.process_time() - cpu_start
    assert solution.feasible, solution.reasons
    target = target.with_collimation(plan.collimation)
    geometry.validate(target.pose)
    # acquire: the ground truth without and with the collimator
    open_mask = render_masks(target.with_collimation(type(plan.collimation).open()), [name])[name]
    seen = render_masks(target, [name])[name]
    check = check_coverage(open_mask, plan.collimation, collimated_mask=seen)
    rows, cols = np.nonzero(open_mask)
    width = patient_carm.sensor_width_px
    centring = np.hypot(cols.mean() + 0.5 - width / 2, rows.mean() + 0.5 - width / 2) / width
    record_figure(f"core loop {name} -> {request}: centroid error image {results['image']:.1f} mm, twin "
                  f"{results['twin']:.1f} mm, fused {results['fused']:.1f} mm; second view "
                  f"{second_view.separation_deg:.0f} deg away; coverage {check.coverage:.3f}, centring "
                  f"{100 * centring:.1f}% of the width, collimated area {check.area_fraction:.2f}; localise (fused, "
                  f"default config) + plan + collimate {planning_cpu_s:.2f} s CPU")
    assert check.passed, check.message
    assert centring < 0.10


def test_localise_dispatch_errors(default_patient):
    with pytest.raises(PlanningInputError, match="twin prior"):
        localise("fused", "liver", [], None)
    with pytest.raises(PlanningInputError, match="unknown localisation mode"):
        localise("psychic", "liver", [], TwinPrior(default_patient))
    with pytest.raises(LocalisationError, match="posed mask"):
        localise("fused", "liver", [], TwinPrior(default_patient))
    assert localise("twin", "liver", prior=TwinPrior(default_patient)).source == "twin"
