import numpy as np
import pytest
from control_scenes import pose_at, sphere_mask

from fluorosam_ros.control.collimation import (CollimationPolicy, adjust_collimation, check_coverage,
                                               collimate_structure, coverage, edge_contact, plan_collimation,
                                               px_per_mm_at)
from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.structure import LocalisedStructure
from fluorosam_ros.control.views import solve_view
from fluorosam_ros.geometry.carm import CArmGeometry, CArmState
from fluorosam_ros.geometry.collimation import Collimation


def _sphere_structure(centre, radius, spacing=2.0):
    grid = np.arange(-radius, radius + spacing, spacing)
    points = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    points = points[np.linalg.norm(points, axis=1) <= radius]
    return LocalisedStructure.from_points("sphere", "image", points + centre, spacing, 1.0)


def test_field_covers_the_projection_with_the_margin(small_carm):
    geometry = CArmGeometry(small_carm)
    centre = np.array([5.0, -10.0, 20.0])
    pose = pose_at(geometry, centre + [15.0, 0.0, 10.0], 0.0, 0.0)
    state = CArmState(small_carm, pose)
    camera = state.camera()
    structure = _sphere_structure(centre, 20.0)
    policy = CollimationPolicy(margin_mm=8.0, min_size_mm=0.0)
    plan = collimate_structure(structure, state, policy)
    c = plan.collimation
    c.validate(camera.sensor_width, camera.sensor_height)
    assert plan.predicted_coverage == 1.0 and not plan.clipped
    # the true silhouette sits inside with at least the margin, and not much more than it
    mask = sphere_mask(camera, centre, 20.0)
    assert coverage(mask, c) == 1.0
    rows, cols = np.nonzero(mask)
    margin_px = 8.0 * px_per_mm_at(camera, geometry.viewpoint_world(pose))
    assert plan.margin_px == pytest.approx(margin_px)
    gaps = [cols.min() - c.col_min_px, c.col_max_px - (cols.max() + 1), rows.min() - c.row_min_px,
            c.row_max_px - (rows.max() + 1)]
    assert min(gaps) >= margin_px - 1.0 and max(gaps) <= margin_px + 3.0
    assert plan.area_fraction < 0.5
    # a larger margin gives a larger field
    wider = collimate_structure(structure, state, CollimationPolicy(margin_mm=20.0))
    assert wider.area_fraction > plan.area_fraction


def test_minimum_size_and_clipping(small_carm):
    geometry = CArmGeometry(small_carm)
    pose = pose_at(geometry, [0.0, 0.0, 0.0], 0.0, 0.0)
    state = CArmState(small_carm, pose)
    camera = state.camera()
    tiny = _sphere_structure(np.zeros(3), 2.0, 1.0)
    plan = collimate_structure(tiny, state, CollimationPolicy(margin_mm=0.0, min_size_mm=40.0))
    side_px = 40.0 * px_per_mm_at(camera, np.zeros(3))
    assert plan.collimation.col_max_px - plan.collimation.col_min_px >= side_px - 1e-6
    # a structure near the detector edge: the field is clipped to the detector, and says so
    ray = geometry.principal_ray_world(pose)
    edge_point = camera.index_to_world_on_detector(np.array(2.0), np.array(64.0))
    near_edge = camera.source_world + (edge_point - camera.source_world) * (
        float(np.dot(np.zeros(3) - camera.source_world, ray)) / float(np.dot(edge_point - camera.source_world, ray)))
    clipped = collimate_structure(_sphere_structure(near_edge, 10.0), state, CollimationPolicy())
    clipped.collimation.validate(camera.sensor_width, camera.sensor_height)
    assert clipped.clipped and clipped.collimation.col_min_px == 0.0 and clipped.predicted_coverage < 1.0
    with pytest.raises(PlanningInputError, match="outside the detector"):
        collimate_structure(_sphere_structure(np.array([0.0, 0.0, 900.0]), 5.0), state)
    with pytest.raises(PlanningInputError, match="NaN"):
        plan_collimation(np.array([[0.0, np.nan, 0.0]]), camera, np.zeros(3))
    with pytest.raises(PlanningInputError):
        CollimationPolicy(margin_mm=-1.0)
    assert collimate_structure(tiny, state, CollimationPolicy(enabled=False)).collimation == Collimation.open()


def test_coverage_and_edge_contact():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    assert coverage(mask, Collimation.rectangle(5, 5, 25, 25)) == 1.0
    assert coverage(mask, Collimation.rectangle(15, 0, 40, 40)) == pytest.approx(0.5)
    assert edge_contact(mask, Collimation.rectangle(5, 5, 25, 25)) == 0.0
    cut = Collimation.rectangle(15, 5, 25, 25)  # cuts the square: it touches the left edge
    assert edge_contact(mask & cut.field_mask(40, 40), cut) > 0.05
    check = check_coverage(mask, cut)
    assert not check.passed and "coverage" in check.message and "edge" in check.message
    assert check_coverage(mask, Collimation.rectangle(5, 5, 25, 25)).passed


def test_collimate_intents_without_a_structure():
    field = Collimation.rectangle(40, 40, 80, 80)
    tighter = adjust_collimation(field, "tighter", 128, 128)
    assert tighter.col_max_px - tighter.col_min_px == pytest.approx(40 / 1.25)
    assert (tighter.col_min_px + tighter.col_max_px) / 2 == pytest.approx(60.0)
    assert adjust_collimation(tighter, "wider", 128, 128) == field
    assert adjust_collimation(field, "open", 128, 128) == Collimation.open()
    assert adjust_collimation(Collimation.open(), "wider", 128, 128) == Collimation.open()
    start = adjust_collimation(Collimation.open(), "tighter", 128, 128)
    start.validate(128, 128)
    assert start.area_fraction(128, 128) == pytest.approx(1 / 1.25 ** 2, abs=0.02)
    near_edge = adjust_collimation(Collimation.rectangle(0, 0, 100, 100), "wider", 128, 128)
    near_edge.validate(128, 128)
    tiny = field
    for _ in range(30):
        tiny = adjust_collimation(tiny, "tighter", 128, 128)
    assert tiny.col_max_px - tiny.col_min_px == pytest.approx(8.0)
    with pytest.raises(PlanningInputError):
        adjust_collimation(field, "sideways", 128, 128)


def test_real_anatomy_collimation_coverage(default_patient, patient_carm, render_masks, truth_prior, record_figure):
    """Plan a view and its collimation from the true structure, render the twin with and without
    it: the uncollimated ground-truth mask must lie inside the field."""
    geometry = CArmGeometry(patient_carm)
    covered, areas = [], []
    for name, view in (("kidney_left", "ap"), ("vertebrae_L1", "lateral"), ("heart", "rao 30")):
        truth = truth_prior.localise(name)
        solution = solve_view(truth, view, geometry)
        state = CArmState(patient_carm, solution.pose)
        plan = collimate_structure(truth, state)
        mask = render_masks(state, [name])[name]
        collimated = render_masks(state.with_collimation(plan.collimation), [name])[name]
        check = check_coverage(mask, plan.collimation, collimated_mask=collimated)
        assert check.passed, f"{name}: {check.message}"
        covered.append(check.coverage)
        areas.append(check.area_fraction)
    assert min(covered) >= 0.95
    record_figure(f"collimation to the true structure (3 structures, margin 10 mm): coverage min "
                  f"{min(covered):.3f}, collimated area {np.mean(areas):.2f} of the field (mean)")
