"""Detector model: Beer-Lambert to intensity, optional quantum (Poisson) noise, display images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectorModel:
    """`photons_per_pixel`: unattenuated quanta per pixel; None renders without quantum noise.
    `display_percentiles`: the window of the neg-log display, over the exposed pixels."""

    photons_per_pixel: float | None = None
    display_percentiles: tuple[float, float] = (0.5, 99.5)

    def intensity(self, line_integral: np.ndarray, exposed: np.ndarray,
                  rng: np.random.Generator | None = None) -> np.ndarray:
        """I / I0 per pixel, 0 where the collimator blocks the beam."""
        intensity = np.exp(-line_integral.astype(np.float64))
        if self.photons_per_pixel:
            rng = rng or np.random.default_rng()
            counts = rng.poisson(intensity * self.photons_per_pixel)
            # A pixel that counts nothing reads as one quantum: the neg-log stays finite.
            intensity = np.maximum(counts, 1) / self.photons_per_pixel
        intensity[~exposed] = 0.0
        return intensity.astype(np.float32)

    def display(self, intensity: np.ndarray, exposed: np.ndarray) -> np.ndarray:
        """Windowed neg-log image in [0, 1]: dense (bone) bright, air dark, shuttered area black."""
        neg_log = np.zeros(intensity.shape, dtype=np.float32)
        valid = exposed & (intensity > 0)
        neg_log[valid] = -np.log(intensity[valid])
        if not valid.any():
            return neg_log
        lo, hi = np.percentile(neg_log[valid], self.display_percentiles)
        scaled = (neg_log - lo) / max(hi - lo, 1e-6)
        scaled = np.clip(scaled, 0.0, 1.0)
        scaled[~exposed] = 0.0
        return scaled.astype(np.float32)


def to_mono16(display: np.ndarray) -> np.ndarray:
    return np.round(np.clip(display, 0.0, 1.0) * 65535.0).astype(np.uint16)


def to_mono8(display: np.ndarray) -> np.ndarray:
    return np.round(np.clip(display, 0.0, 1.0) * 255.0).astype(np.uint8)
