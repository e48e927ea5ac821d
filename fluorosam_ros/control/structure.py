"""A localised structure in the world (patient LPS, mm): centroid, oriented box, points.

Whatever mode produced it (image-only visual hull, twin prior, fused), the planner consumes
the same `LocalisedStructure`, so view planning and collimation never care where it came from.
The box metrics (precision/recall of volumes) are those the IPCAI 2025 paper reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .safety import PlanningInputError, finite_array


@dataclass(frozen=True)
class OrientedBox:
    """A box with centre, unit axes (rows, longest first) and half extents along them (mm)."""

    center_world: np.ndarray
    axes_world: np.ndarray
    half_extents_mm: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_world", finite_array("box centre", self.center_world, (3,)))
        axes = finite_array("box axes", self.axes_world, (3, 3))
        if not np.allclose(axes @ axes.T, np.eye(3), atol=1e-6):
            raise PlanningInputError("box axes must be orthonormal rows")
        object.__setattr__(self, "axes_world", axes)
        half = finite_array("box half extents", self.half_extents_mm, (3,))
        if np.any(half < 0):
            raise PlanningInputError("box half extents must be >= 0")
        object.__setattr__(self, "half_extents_mm", half)

    @classmethod
    def axis_aligned(cls, min_world, max_world) -> "OrientedBox":
        lo, hi = finite_array("box min", min_world, (3,)), finite_array("box max", max_world, (3,))
        return cls((lo + hi) / 2, np.eye(3), np.abs(hi - lo) / 2)

    @property
    def size_mm(self) -> np.ndarray:
        return 2.0 * self.half_extents_mm

    @property
    def volume_mm3(self) -> float:
        return float(np.prod(self.size_mm))

    def corners_world(self) -> np.ndarray:
        """(8, 3) corners."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
        return self.center_world + (signs * self.half_extents_mm) @ self.axes_world

    def contains(self, points_world: np.ndarray, tolerance_mm: float = 1e-9) -> np.ndarray:
        local = (np.atleast_2d(points_world) - self.center_world) @ self.axes_world.T
        return np.all(np.abs(local) <= self.half_extents_mm + tolerance_mm, axis=1)

    def sample_points(self, per_axis: int = 24) -> np.ndarray:
        """A regular grid of cell centres filling the box (for volume overlaps)."""
        steps = (np.arange(per_axis) + 0.5) / per_axis * 2.0 - 1.0
        grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
        return self.center_world + (grid * self.half_extents_mm) @ self.axes_world


def oriented_box_from_points(points_world: np.ndarray, pad_mm: float = 0.0) -> OrientedBox:
    """PCA box of a point cloud: axes = principal axes (longest first), extents = the points'
    full range along each axis plus `pad_mm` (half a voxel makes a voxel cloud's box tight)."""
    points = finite_array("points", points_world, (None, 3))
    if len(points) == 0:
        raise PlanningInputError("cannot fit a box to zero points")
    centroid = points.mean(axis=0)
    if len(points) >= 3:
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov((points - centroid).T))
        axes = eigenvectors[:, np.argsort(eigenvalues)[::-1]].T
    else:
        axes = np.eye(3)
    if np.linalg.det(axes) < 0:  # keep a right-handed frame; the sign of an axis is arbitrary
        axes[2] *= -1
    local = (points - centroid) @ axes.T
    lo, hi = local.min(axis=0) - pad_mm, local.max(axis=0) + pad_mm
    center = centroid + ((lo + hi) / 2) @ axes
    return OrientedBox(center, axes, (hi - lo) / 2)


def box_precision_recall(estimate: OrientedBox, truth: OrientedBox, per_axis: int = 24) -> tuple[float, float]:
    """(precision, recall) of two boxes' volumes: |E∩T|/|E| and |E∩T|/|T|, by sampling each box
    on a regular grid (deterministic; error ~1/per_axis of an extent)."""
    in_truth = truth.contains(estimate.sample_points(per_axis)).mean()
    in_estimate = estimate.contains(truth.sample_points(per_axis)).mean()
    # the two estimates of |E∩T| differ by sampling error only; use each where it is direct
    return float(in_truth), float(in_estimate)


@dataclass(frozen=True)
class LocalisedStructure:
    """Where a structure is. `points_world` are voxel centres of its (estimated) volume, spaced
    `point_spacing_mm`; `confidence` is in [0, 1] and its meaning is documented by `source`."""

    name: str
    source: str                      # "image", "twin" or "fused"
    centroid_world: np.ndarray
    box: OrientedBox
    points_world: np.ndarray
    point_spacing_mm: float
    confidence: float
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "centroid_world", finite_array("centroid", self.centroid_world, (3,)))
        object.__setattr__(self, "points_world", finite_array("structure points", self.points_world, (None, 3)))

    @classmethod
    def from_points(cls, name: str, source: str, points_world: np.ndarray, point_spacing_mm: float,
                    confidence: float, details: dict | None = None) -> "LocalisedStructure":
        points = finite_array("structure points", points_world, (None, 3))
        if len(points) == 0:
            raise PlanningInputError(f"structure {name!r} has no points")
        box = oriented_box_from_points(points, pad_mm=point_spacing_mm / 2)
        return cls(name, source, points.mean(axis=0), box, points, float(point_spacing_mm),
                   float(np.clip(confidence, 0.0, 1.0)), dict(details or {}))
