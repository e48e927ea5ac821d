"""Intensity 2-D/3-D registration of the twin's CT to frames (control/image_registration.py)."""

import numpy as np
import pytest

from fluorosam_ros.control.image_registration import (ImageRegistrar, ImageRegistrationConfig, downsampled_patient,
                                                      gradient_correlation, reduced_camera, _gradients)
from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.twin_prior import RegistrationErrorConfig, rigid_difference, sample_registration_error
from fluorosam_ros.control.views import solve_view
from fluorosam_ros.geometry.carm import CArmGeometry, CArmState
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.twin.detector import DetectorModel
from fluorosam_ros.twin.patient import Patient


@pytest.fixture(scope="module")
def registrar(default_patient) -> ImageRegistrar:
    return ImageRegistrar(default_patient)


def _frame(default_renderer, state: CArmState, seed: int = 0) -> np.ndarray:
    """The frame carm_sim would publish (detector noise, display window)."""
    detector = DetectorModel()
    result = default_renderer.render(state, structures=None)
    return detector.display(detector.intensity(result.line_integral, result.exposed, np.random.default_rng(seed)),
                            result.exposed)


def _state(truth_prior, patient_carm, name: str, view: str, collimation: Collimation | None = None) -> CArmState:
    pose = solve_view(truth_prior.localise(name), view, CArmGeometry(patient_carm)).pose
    return CArmState(patient_carm, pose, collimation or Collimation.open())


def test_downsampled_patient_keeps_world_positions():
    hu = np.full((12, 10, 8), -1000.0, dtype=np.float32)
    hu[6:8, 4:6, 2:4] = 1000.0  # a bright 2x2x2 block whose centre is voxel (6.5, 4.5, 2.5)
    world_from_voxel = np.diag([0.8, 0.7, 1.5, 1.0])
    world_from_voxel[:3, 3] = (10.0, -20.0, 5.0)
    patient = Patient("block", hu, world_from_voxel)
    reduced = downsampled_patient(patient, 1.6)   # factors 2, 2, 1
    assert reduced.shape == (6, 5, 8)
    assert np.allclose(reduced.spacing_mm, (1.6, 1.4, 1.5))
    bright = np.argwhere(reduced.hu > 0).mean(axis=0)
    original = world_from_voxel @ np.r_[6.5, 4.5, 2.5, 1.0]
    assert np.allclose(reduced.world_from_voxel @ np.r_[bright, 1.0], original)
    assert float(reduced.hu.max()) == pytest.approx(1000.0)


def test_reduced_camera_projects_to_the_coarser_grid(truth_prior, patient_carm):
    camera = _state(truth_prior, patient_carm, "liver", "ap").camera()
    points = truth_prior.structure_points_world("liver")[:50]
    coarse = reduced_camera(camera, 4)
    assert (coarse.sensor_width, coarse.sensor_height) == (camera.sensor_width // 4, camera.sensor_height // 4)
    assert np.allclose(coarse.project(points), camera.project(points) / 4)
    # a twin placed by T, seen in its own frame: the same pixels as the placed points
    placed = sample_registration_error(RegistrationErrorConfig(10.0, 4.0, 2), points.mean(axis=0))
    moved = (placed[:3, :3] @ points.T).T + placed[:3, 3]
    assert np.allclose(reduced_camera(camera, 2, placed).project(points), camera.project(moved) / 2)


def test_gradient_correlation_is_one_for_the_same_image_under_gain_and_offset():
    rng = np.random.default_rng(0)
    image = np.cumsum(rng.normal(size=(40, 40)), axis=1)
    valid = np.ones(image.shape, bool)
    fixed = _gradients(image, 1.0)
    assert gradient_correlation(fixed, _gradients(3.0 * image + 7.0, 1.0), valid) == pytest.approx(1.0)
    assert gradient_correlation(fixed, _gradients(-image, 1.0), valid) == pytest.approx(-1.0)
    unrelated = gradient_correlation(fixed, _gradients(rng.normal(size=image.shape), 1.0), valid)
    assert abs(unrelated) < 0.2
    assert gradient_correlation(fixed, _gradients(np.zeros_like(image), 1.0), valid) == 0.0


@pytest.mark.parametrize("name,view,seed", [("heart", "ap", 0), ("vertebrae_L1", "lateral", 3)])
def test_registration_recovers_an_injected_error_across_the_beam(registrar, default_renderer, truth_prior,
                                                                 patient_carm, name, view, seed, record_figure):
    """One frame: the translation across the beam and the rotation are recovered; the depth is
    held at the prior's (a single view cannot resolve it)."""
    state = _state(truth_prior, patient_carm, name, view)
    centre = truth_prior.localise(name).centroid_world
    error = sample_registration_error(RegistrationErrorConfig(15.0, 5.0, seed), centre)
    placed = (error @ np.r_[centre, 1.0])[:3]  # where the misregistered twin puts the target
    result = registrar.register(error, [(_frame(default_renderer, state), state)], placed)
    assert result.improved, result.message
    offset = (result.world_from_twin @ np.r_[centre, 1.0])[:3] - centre
    ray = state.camera().principal_ray_world
    across = float(np.linalg.norm(offset - (offset @ ray) * ray))
    initial_offset = (error @ np.r_[centre, 1.0])[:3] - centre
    _, rotation = rigid_difference(result.world_from_twin, np.eye(4), centre)
    record_figure(f"image registration {name} {view} (1 frame, 128^2): 15.0 mm / 5.0 deg -> across the beam "
                  f"{across:.1f} mm, rotation {rotation:.1f} deg; gradient correlation "
                  f"{np.mean(result.similarity_before):.2f} -> {result.similarity:.2f}; {result.evaluations} "
                  f"evaluations, {result.seconds:.1f} s")
    assert across < 3.0 and rotation < 2.5
    assert result.similarity > 0.9
    assert abs(offset @ ray - initial_offset @ ray) < 1e-6  # depth held


def test_two_directions_recover_the_depth(registrar, default_renderer, truth_prior, patient_carm):
    name = "kidney_left"
    centre = truth_prior.localise(name).centroid_world
    error = sample_registration_error(RegistrationErrorConfig(15.0, 5.0, 1), centre)
    frames = [(_frame(default_renderer, s, i), s) for i, s in
              enumerate(_state(truth_prior, patient_carm, name, v) for v in ("ap", "lateral"))]
    result = registrar.register(error, frames, centre)
    translation, rotation = rigid_difference(result.world_from_twin, np.eye(4), centre)
    assert result.improved and translation < 3.0 and rotation < 2.5, (translation, rotation, result.message)


def test_a_frame_the_twin_cannot_explain_leaves_the_registration_alone(registrar, truth_prior, patient_carm):
    state = _state(truth_prior, patient_carm, "liver", "ap")
    noise = np.random.default_rng(5).random((patient_carm.sensor_height_px, patient_carm.sensor_width_px))
    centre = truth_prior.localise("liver").centroid_world
    error = sample_registration_error(RegistrationErrorConfig(15.0, 5.0, 0), centre)
    result = registrar.register(error, [(noise.astype(np.float32), state)], centre)
    assert not result.improved and "rejected" in result.message
    assert np.array_equal(result.world_from_twin, error) and np.array_equal(result.correction, np.eye(4))


def test_collimation_limits_the_compared_field(registrar, default_renderer, truth_prior, patient_carm):
    """A tightly collimated frame still registers on what it shows; a shutter closed down to
    nothing gives a clear refusal instead of a correction from the collimator's edges."""
    width, height = patient_carm.sensor_width_px, patient_carm.sensor_height_px
    tight = Collimation.rectangle(0.3 * width, 0.25 * height, 0.75 * width, 0.8 * height)
    state = _state(truth_prior, patient_carm, "vertebrae_T12", "ap", tight)
    centre = truth_prior.localise("vertebrae_T12").centroid_world
    error = sample_registration_error(RegistrationErrorConfig(10.0, 3.0, 4), centre)
    result = registrar.register(error, [(_frame(default_renderer, state), state)], centre)
    assert result.improved, result.message
    closed = _state(truth_prior, patient_carm, "vertebrae_T12", "ap",
                    Collimation.rectangle(0.45 * width, 0.45 * height, 0.5 * width, 0.5 * height))
    refused = registrar.register(error, [(_frame(default_renderer, closed), closed)], centre)
    assert not refused.improved and "exposed field" in refused.message


def test_bad_frames_are_refused_clearly(registrar, truth_prior, patient_carm):
    state = _state(truth_prior, patient_carm, "liver", "ap")
    shape = (patient_carm.sensor_height_px, patient_carm.sensor_width_px)
    centre = truth_prior.localise("liver").centroid_world
    with pytest.raises(PlanningInputError, match="non-finite"):
        registrar.register(np.eye(4), [(np.full(shape, np.nan, np.float32), state)], centre)
    with pytest.raises(PlanningInputError, match="does not match"):
        registrar.register(np.eye(4), [(np.zeros((shape[0] // 2, shape[1]), np.float32), state)], centre)


def test_config_validation_and_ros_float_arrays():
    config = ImageRegistrationConfig(resolutions_px=(32.0, 64.0), max_evaluations_per_level=(100.0, 50.0))
    assert config.resolutions_px == (32, 64) and config.max_evaluations_per_level == (100, 50)
    assert all(isinstance(v, int) for v in config.resolutions_px + config.max_evaluations_per_level)
    with pytest.raises(PlanningInputError):
        ImageRegistrationConfig(resolutions_px=(32.5, 64))
    with pytest.raises(PlanningInputError):
        ImageRegistrationConfig(resolutions_px=(32,), blur_sigmas_px=(1.0, 0.5))
    with pytest.raises(PlanningInputError):
        ImageRegistrationConfig(min_similarity=float("nan"))
    with pytest.raises(PlanningInputError):
        ImageRegistrationConfig(threads=-1)
    with pytest.raises(PlanningInputError):
        ImageRegistrationConfig(voxels_mm=(3.0,))


def test_thread_count_is_restored_after_registration(default_renderer, truth_prior, patient_carm):
    import numba

    before = numba.get_num_threads()
    single = ImageRegistrar(truth_prior.patient, ImageRegistrationConfig(threads=1))
    state = _state(truth_prior, patient_carm, "liver", "ap")
    centre = truth_prior.localise("liver").centroid_world
    result = single.register(np.eye(4), [(_frame(default_renderer, state), state)], centre)
    assert numba.get_num_threads() == before
    assert result.similarity_before and result.similarity_before[0] > 0.9  # the true registration fits
