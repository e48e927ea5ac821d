"""The DeepDRR backend: what runs without CUDA here, and the GPU comparison where CUDA exists."""

from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
from fluorosam_ros.twin.deepdrr_backend import (
    DeepDRRRenderer,
    config_from_deepdrr_kwargs,
    deepdrr_carm_kwargs,
    deepdrr_unavailable_reason,
)
from fluorosam_ros.twin.renderer import available_renderers, build_renderer


def test_kwargs_round_trip_for_the_simulators_configuration():
    config = CArmConfig.for_supine_patient(gamma_deg=12.0, source_to_isocenter_horizontal_offset_mm=30.0).with_image_size(384)
    back = config_from_deepdrr_kwargs(deepdrr_carm_kwargs(config))
    for name in ("source_to_detector_distance_mm", "sensor_width_px", "pixel_size_mm", "gamma_deg",
                 "source_to_isocenter_horizontal_offset_mm", "max_beta_deg"):
        assert getattr(back, name) == pytest.approx(getattr(config, name)), name
    np.testing.assert_allclose(back.world_from_device, config.world_from_device)


def test_unavailable_backend_says_why_and_cpu_stays_available(default_patient):
    reason = deepdrr_unavailable_reason()
    assert "cpu" in available_renderers()
    if reason is None:
        pytest.skip("DeepDRR can run here; covered by the GPU test")
    assert "deepdrr" not in available_renderers()
    with pytest.raises(RuntimeError, match="cannot run here"):
        DeepDRRRenderer(default_patient)
    with pytest.raises(ValueError, match="unknown renderer"):
        build_renderer("optix", default_patient)


@pytest.mark.skipif(deepdrr_unavailable_reason() is not None,
                    reason=f"needs CUDA, nvcc and EGL: {deepdrr_unavailable_reason()}")
def test_deepdrr_and_cpu_agree_on_the_default_ct(default_patient, default_renderer, record_figure):
    config = CArmConfig.for_supine_patient(mirror_columns=True).with_image_size(256)
    state = CArmState(config, CArmPose(tuple(default_patient.center_world), 20.0, 10.0))
    gpu = build_renderer("deepdrr", default_patient).render(state, structures=["heart"])
    cpu = default_renderer.render(state, structures=["heart"])
    a, b = gpu.line_integral, cpu.line_integral
    ncc = float(np.mean((a - a.mean()) * (b - b.mean())) / (a.std() * b.std()))
    record_figure(f"DeepDRR vs CPU line integrals: NCC {ncc:.4f}")
    assert ncc > 0.97
    np.testing.assert_array_equal(gpu.mask("heart"), cpu.mask("heart"))
