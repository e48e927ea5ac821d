"""Fixtures for the planner's core: the C-arm set-ups and the default patient rendered by the
CPU twin (128^2 renders take ~0.3 s). Plain helpers live in test/helpers/control_scenes.py."""

from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.geometry.carm import CArmConfig, CArmState


@pytest.fixture(scope="session")
def small_carm() -> CArmConfig:
    """The Cios geometry (DeepDRR defaults, supine, radiological display) read out at 128^2."""
    return CArmConfig.for_supine_patient(mirror_columns=True).with_image_size(128)


@pytest.fixture(scope="session")
def patient_carm(default_patient) -> CArmConfig:
    """As carm_sim sets it up for the default patient: isocenter travel = CT box + 150 mm."""
    corners = default_patient.corners_world()
    return CArmConfig.for_supine_patient(
        mirror_columns=True, isocenter_min_mm=tuple(corners.min(axis=0) - 150.0),
        isocenter_max_mm=tuple(corners.max(axis=0) + 150.0)).with_image_size(128)


@pytest.fixture(scope="session")
def render_masks(default_renderer):
    """render_masks(state, names) -> {name: mask} of the default patient (cached)."""
    cache: dict = {}

    def render(state: CArmState, names) -> dict[str, np.ndarray]:
        key = (state.config.sensor_width_px, state.pose, state.collimation, tuple(names))
        if key not in cache:
            cache[key] = default_renderer.render(state, structures=list(names)).masks()
        return cache[key]

    return render


@pytest.fixture(scope="session")
def truth_prior(default_patient):
    """The twin with the true registration: ground-truth structures of the default patient."""
    from fluorosam_ros.control.twin_prior import TwinPrior

    return TwinPrior(default_patient)
