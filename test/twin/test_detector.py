from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.twin.detector import DetectorModel, to_mono16, to_mono8


def test_beer_lambert_and_shutter():
    line = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    exposed = np.array([[True, True], [True, False]])
    intensity = DetectorModel().intensity(line, exposed)
    np.testing.assert_allclose(intensity[exposed], np.exp(-line[exposed]), rtol=1e-6)
    assert intensity[1, 1] == 0


def test_poisson_noise_has_the_right_statistics(rng):
    line = np.full((200, 200), 1.0, dtype=np.float32)
    exposed = np.ones_like(line, dtype=bool)
    intensity = DetectorModel(photons_per_pixel=1000).intensity(line, exposed, rng)
    counts = intensity * 1000
    assert counts.mean() == pytest.approx(1000 * np.exp(-1), rel=0.01)
    assert counts.var() == pytest.approx(1000 * np.exp(-1), rel=0.05)


def test_display_is_windowed_neg_log_with_black_shutter():
    line = np.linspace(0, 5, 100, dtype=np.float32).reshape(10, 10)
    exposed = np.ones_like(line, dtype=bool)
    exposed[:, :2] = False
    detector = DetectorModel()
    display = detector.display(detector.intensity(line, exposed), exposed)
    assert display.min() >= 0 and display.max() <= 1
    assert np.all(display[:, :2] == 0)
    assert display[9, 9] > display[2, 2]  # more attenuation is brighter
    assert to_mono16(display).dtype == np.uint16 and to_mono16(display).max() == 65535
    assert to_mono8(display).max() == 255
