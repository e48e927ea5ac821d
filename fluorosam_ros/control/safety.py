"""Input and output guards shared by the planner's core.

Two rules: nothing non-finite gets into a computation that ends in a motion command, and no
pose leaves the planner unless `CArmGeometry.validate` accepts it. Errors say which input
was bad, so a caller (the planner node) can report the reason instead of a traceback.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..geometry.carm import CArmGeometry, CArmPose, PoseError


class PlanningInputError(ValueError):
    """An input to the planner is malformed (NaN/inf, wrong shape, empty)."""


def finite_array(name: str, value, shape: Sequence[int | None] | None = None) -> np.ndarray:
    """`value` as a float array, checked to be finite and (optionally) of `shape`
    (None in `shape` matches any length)."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise PlanningInputError(f"{name} must be numeric: {error}") from None
    if shape is not None:
        if array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape)):
            expected = "x".join("N" if s is None else str(s) for s in shape)
            raise PlanningInputError(f"{name} must have shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise PlanningInputError(f"{name} contains {bad} NaN/inf value(s)")
    return array


def finite_scalar(name: str, value, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanningInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise PlanningInputError(f"{name} must be finite, got {number}")
    if minimum is not None and number < minimum:
        raise PlanningInputError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise PlanningInputError(f"{name} must be <= {maximum}, got {number}")
    return number


def binary_mask(name: str, mask, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D boolean mask; numeric masks are thresholded at > 0 (NaN rejected)."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise PlanningInputError(f"{name} must be a 2-D mask, got shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise PlanningInputError(f"{name} has shape {array.shape}, expected {tuple(shape)}")
    if array.dtype != bool:
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise PlanningInputError(f"{name} contains NaN/inf")
        array = array > 0
    return array


def checked_pose(geometry: CArmGeometry, pose: CArmPose) -> CArmPose:
    """`pose` if the C-arm may be commanded to it; PoseError (with the reasons) otherwise.
    Every pose the planner returns goes through here."""
    geometry.validate(pose)
    return pose


__all__ = ["PlanningInputError", "PoseError", "finite_array", "finite_scalar", "binary_mask", "checked_pose"]
