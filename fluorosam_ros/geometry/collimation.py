"""Collimator field on the detector: a rectangle in detector pixels, optionally with an iris.

Pixel coordinates follow DeepDRR's index convention: column = u, row = v, pixel (row r, col c)
covers [c, c + 1) x [r, r + 1) and its centre is (c + 0.5, r + 0.5). A fully open detector of
W x H pixels spans [0, W] x [0, H].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


class CollimationError(ValueError):
    """A collimation that is malformed or not within the detector."""


@dataclass(frozen=True)
class Collimation:
    """Rectangle [col_min, col_max] x [row_min, row_max] (detector pixels), iris optional.

    `enabled=False` means the field is the whole detector.
    """

    enabled: bool = False
    col_min_px: float = 0.0
    row_min_px: float = 0.0
    col_max_px: float = 0.0
    row_max_px: float = 0.0
    iris_radius_px: float = 0.0
    iris_center_col_px: float = 0.0
    iris_center_row_px: float = 0.0

    @classmethod
    def open(cls) -> "Collimation":
        return cls(enabled=False)

    @classmethod
    def rectangle(cls, col_min: float, row_min: float, col_max: float, row_max: float) -> "Collimation":
        return cls(True, float(col_min), float(row_min), float(col_max), float(row_max))

    @classmethod
    def centered(cls, width_px: float, height_px: float, sensor_width: int, sensor_height: int,
                 center_col: float | None = None, center_row: float | None = None) -> "Collimation":
        """A rectangle of the given size centred at (center_col, center_row) (default: detector centre)."""
        cc = sensor_width / 2 if center_col is None else center_col
        cr = sensor_height / 2 if center_row is None else center_row
        return cls.rectangle(cc - width_px / 2, cr - height_px / 2, cc + width_px / 2, cr + height_px / 2)

    def with_iris(self, radius_px: float, center_col: float, center_row: float) -> "Collimation":
        return replace(self, iris_radius_px=float(radius_px), iris_center_col_px=float(center_col),
                       iris_center_row_px=float(center_row))

    def _values(self) -> tuple[float, ...]:
        return (self.col_min_px, self.row_min_px, self.col_max_px, self.row_max_px,
                self.iris_radius_px, self.iris_center_col_px, self.iris_center_row_px)

    def validate(self, sensor_width: int, sensor_height: int) -> None:
        """Raise CollimationError unless the field is finite, non-empty and within the detector."""
        if not self.enabled:
            return
        if not all(math.isfinite(v) for v in self._values()):
            raise CollimationError("collimation contains NaN or inf")
        if self.col_max_px <= self.col_min_px or self.row_max_px <= self.row_min_px:
            raise CollimationError(
                f"collimation rectangle is empty: cols [{self.col_min_px}, {self.col_max_px}], "
                f"rows [{self.row_min_px}, {self.row_max_px}]")
        tolerance = 1e-6
        if (self.col_min_px < -tolerance or self.row_min_px < -tolerance
                or self.col_max_px > sensor_width + tolerance
                or self.row_max_px > sensor_height + tolerance):
            raise CollimationError(
                f"collimation rectangle cols [{self.col_min_px:g}, {self.col_max_px:g}] rows "
                f"[{self.row_min_px:g}, {self.row_max_px:g}] is outside the detector "
                f"({sensor_width} x {sensor_height} px, bounds [0, {sensor_width}] x [0, {sensor_height}])")
        if self.iris_radius_px < 0:
            raise CollimationError("iris radius must be >= 0")

    def clipped(self, sensor_width: int, sensor_height: int) -> "Collimation":
        """The same field clipped to the detector bounds (used by planners, never by the C-arm)."""
        if not self.enabled:
            return self
        return replace(
            self,
            col_min_px=float(np.clip(self.col_min_px, 0.0, sensor_width)),
            row_min_px=float(np.clip(self.row_min_px, 0.0, sensor_height)),
            col_max_px=float(np.clip(self.col_max_px, 0.0, sensor_width)),
            row_max_px=float(np.clip(self.row_max_px, 0.0, sensor_height)),
        )

    def scaled(self, factor: float) -> "Collimation":
        """The same physical field in the pixels of a detector resampled by `factor` (new px per old px)."""
        if not self.enabled:
            return self
        return replace(
            self, col_min_px=self.col_min_px * factor, row_min_px=self.row_min_px * factor,
            col_max_px=self.col_max_px * factor, row_max_px=self.row_max_px * factor,
            iris_radius_px=self.iris_radius_px * factor,
            iris_center_col_px=self.iris_center_col_px * factor,
            iris_center_row_px=self.iris_center_row_px * factor)

    def field_mask(self, sensor_width: int, sensor_height: int) -> np.ndarray:
        """Boolean (H, W) image: True where the pixel centre is inside the field."""
        if not self.enabled:
            return np.ones((sensor_height, sensor_width), dtype=bool)
        cols = np.arange(sensor_width, dtype=float)[None, :] + 0.5
        rows = np.arange(sensor_height, dtype=float)[:, None] + 0.5
        inside = ((cols >= self.col_min_px) & (cols <= self.col_max_px)
                  & (rows >= self.row_min_px) & (rows <= self.row_max_px))
        if self.iris_radius_px > 0:
            inside &= ((cols - self.iris_center_col_px) ** 2 + (rows - self.iris_center_row_px) ** 2
                       <= self.iris_radius_px ** 2)
        return inside

    def area_fraction(self, sensor_width: int, sensor_height: int) -> float:
        """Fraction of the detector's pixels that are exposed (a dose proxy)."""
        return float(self.field_mask(sensor_width, sensor_height).mean())
