"""The real CT rendered by ours and by nanodrr (an independent MIT renderer) at one geometry."""

from __future__ import annotations

import time

import numpy as np
import pytest
from nanodrr_peer import render_line_integral_nanodrr

from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState

pytestmark = pytest.mark.slow


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = (a - a.mean()) / a.std()
    b = (b - b.mean()) / b.std()
    return float(np.mean(a * b))


@pytest.mark.parametrize("alpha, beta", [(0, 0), (40, 15)])
def test_real_ct_agrees_with_nanodrr(default_renderer, default_patient, alpha, beta, record_figure):
    size = 128
    config = CArmConfig.for_supine_patient().with_image_size(size)
    state = CArmState(config, CArmPose(tuple(default_patient.center_world + [0, 0, 40]), alpha, beta))
    started = time.perf_counter()
    ours = default_renderer.render(state, structures=None)
    ours_s = time.perf_counter() - started

    # The peer integrates the same attenuation field: our per-voxel mu at the beam's energy.
    mu_per_mm = default_renderer.mu_per_mm()
    camera = ours.camera
    pixel00, col_step, row_step = camera.detector_grid_world()
    started = time.perf_counter()
    peer = render_line_integral_nanodrr(mu_per_mm, default_patient.world_from_voxel, camera.source_world,
                                        pixel00, col_step, row_step, size, size)
    peer_s = time.perf_counter() - started
    ncc = normalized_cross_correlation(ours.line_integral, peer)
    relative = np.abs(ours.line_integral - peer) / np.maximum(peer, 1e-3)
    record_figure(f"real CT vs nanodrr at alpha={alpha} beta={beta}, {size}^2: NCC {ncc:.5f}, median relative "
          f"difference {np.median(relative) * 100:.2f}%; ours {ours_s:.2f} s, nanodrr {peer_s:.2f} s")
    assert ncc >= 0.99
    assert np.median(relative) < 0.02
