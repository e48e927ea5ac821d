"""Collimation policy: the collimator rectangle for a target, and the post-acquisition check.

The rectangle is the target's projection (hull voxels or box corners, padded by half a voxel)
plus a margin given in mm at the isocenter plane (so the margin means the same anatomy at any
magnification), grown to a minimum size, rounded outward to whole pixels and clipped to the
detector [0, W] x [0, H] (DeepDRR pixel convention, as `geometry.collimation`).

After acquisition, `check_coverage` measures the fraction of the target mask inside the field.
A mask segmented from the collimated image itself can only be inside the field, so for a live
image the useful signal is `edge_contact`: how much of the field's border the mask touches
(target cut off by the collimator); coverage proper needs an uncollimated mask (the twin's
ground truth in simulation, or the mask from the previous, wider image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import CameraProjection
from ..geometry.carm import CArmState
from ..geometry.collimation import Collimation
from .safety import PlanningInputError, binary_mask, finite_array, finite_scalar
from .structure import LocalisedStructure


@dataclass(frozen=True)
class CollimationPolicy:
    enabled: bool = True
    margin_mm: float = 5.0        # around the target's projection, measured at the isocenter plane,
    #                               when the localisation was checked against the images
    unregistered_margin_mm: float = 15.0  # ... when it was not (the twin's registration as given)
    min_size_mm: float = 30.0     # smallest field side, at the isocenter plane
    use_box: bool = False         # project the oriented box's corners instead of the hull points
    min_coverage: float = 0.95    # post-acquisition: fraction of the target mask inside the field
    edge_band_px: float = 2.0     # width of the field's border band for the edge-contact check
    max_edge_contact: float = 0.05  # above this fraction of the border touched, the target is cut

    def __post_init__(self) -> None:
        finite_scalar("margin_mm", self.margin_mm, minimum=0.0)
        finite_scalar("unregistered_margin_mm", self.unregistered_margin_mm, minimum=0.0)
        finite_scalar("min_size_mm", self.min_size_mm, minimum=0.0)
        finite_scalar("min_coverage", self.min_coverage, minimum=0.0, maximum=1.0)
        finite_scalar("edge_band_px", self.edge_band_px, minimum=0.0)
        finite_scalar("max_edge_contact", self.max_edge_contact, minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class CollimationPlan:
    collimation: Collimation
    predicted_coverage: float     # fraction of the target's projected points inside the field
    area_fraction: float          # field / detector (a dose proxy)
    clipped: bool                 # the detector edge cut the wanted field
    margin_px: float
    message: str = ""


def px_per_mm_at(camera: CameraProjection, point_world) -> float:
    """Detector pixels per mm of anatomy at the depth of `point_world`."""
    point = finite_array("point", point_world, (3,))
    depth = float(camera.depth_mm(point)[0])
    if depth <= 0:
        raise PlanningInputError("the point is behind the X-ray source")
    return float(abs(camera.intrinsic[0, 0])) / depth


def plan_collimation(points_world: np.ndarray, camera: CameraProjection, isocenter_world,
                     policy: CollimationPolicy | None = None, point_spacing_mm: float = 0.0) -> CollimationPlan:
    """The rectangle covering the projection of `points_world` (each padded by half of
    `point_spacing_mm`) with the policy's margin, within the detector."""
    policy = policy or CollimationPolicy()
    width, height = camera.sensor_width, camera.sensor_height
    if not policy.enabled:
        return CollimationPlan(Collimation.open(), 1.0, 1.0, False, 0.0, "collimation disabled by policy")
    points = finite_array("target points", points_world, (None, 3))
    if len(points) == 0:
        raise PlanningInputError("no target points to collimate to")
    spacing = finite_scalar("point_spacing_mm", point_spacing_mm, minimum=0.0)
    if np.any(camera.depth_mm(points) <= 0):
        raise PlanningInputError("part of the target is behind the X-ray source")
    scale_iso = px_per_mm_at(camera, isocenter_world)
    uv = camera.project(points)
    pad = spacing / 2 * float(abs(camera.intrinsic[0, 0])) / camera.depth_mm(points).min()
    margin_px = policy.margin_mm * scale_iso
    lo = uv.min(axis=0) - pad - margin_px
    hi = uv.max(axis=0) + pad + margin_px
    min_px = policy.min_size_mm * scale_iso
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, min_px / 2)
    lo, hi = np.floor(centre - half), np.ceil(centre + half)  # outward to whole pixels
    bounds = np.array([width, height], dtype=float)
    clipped_lo, clipped_hi = np.clip(lo, 0.0, bounds), np.clip(hi, 0.0, bounds)
    if np.any(clipped_hi - clipped_lo < 1.0):
        raise PlanningInputError("the target projects outside the detector: nothing to collimate to")
    clipped = bool(np.any(clipped_lo != lo) or np.any(clipped_hi != hi))
    collimation = Collimation.rectangle(clipped_lo[0], clipped_lo[1], clipped_hi[0], clipped_hi[1])
    collimation.validate(width, height)
    inside = np.all((uv >= clipped_lo) & (uv <= clipped_hi), axis=1)
    message = "the field was clipped by the detector edge" if clipped else ""
    return CollimationPlan(collimation, float(inside.mean()), collimation.area_fraction(width, height),
                           clipped, float(margin_px), message)


def collimate_structure(structure: LocalisedStructure, state: CArmState,
                        policy: CollimationPolicy | None = None) -> CollimationPlan:
    """`plan_collimation` for a localised structure seen from `state`'s pose."""
    policy = policy or CollimationPolicy()
    camera = state.camera()
    isocenter = state.geometry.viewpoint_world(state.pose)
    if policy.use_box:
        return plan_collimation(structure.box.corners_world(), camera, isocenter, policy, 0.0)
    return plan_collimation(structure.points_world, camera, isocenter, policy, structure.point_spacing_mm)


def adjust_collimation(collimation: Collimation, direction: str, sensor_width: int, sensor_height: int,
                       step: float = 1.25, min_size_px: float = 8.0) -> Collimation:
    """A collimate intent without a structure: "open" (whole detector), "wider" or "tighter"
    (each side scaled by `step` about the field's centre, within the detector, never below
    `min_size_px`). Tightening an open field starts from the whole detector."""
    finite_scalar("step", step, minimum=1.0)
    key = direction.lower().strip()
    if key == "open":
        return Collimation.open()
    if key not in ("wider", "tighter"):
        raise PlanningInputError(f"collimate direction must be open/wider/tighter, got {direction!r}")
    current = collimation if collimation.enabled else Collimation.rectangle(0, 0, sensor_width, sensor_height)
    if key == "wider" and not collimation.enabled:
        return Collimation.open()
    factor = step if key == "wider" else 1.0 / step
    centre = np.array([(current.col_min_px + current.col_max_px) / 2, (current.row_min_px + current.row_max_px) / 2])
    half = np.array([current.col_max_px - current.col_min_px, current.row_max_px - current.row_min_px]) / 2
    half = np.maximum(half * factor, min_size_px / 2)
    bounds = np.array([sensor_width, sensor_height], dtype=float)
    lo, hi = np.clip(centre - half, 0.0, bounds), np.clip(centre + half, 0.0, bounds)
    if np.all(lo <= 0) and np.all(hi >= bounds):
        return Collimation.open()
    return Collimation.rectangle(lo[0], lo[1], hi[0], hi[1])


@dataclass(frozen=True)
class CoverageCheck:
    coverage: float               # fraction of the target mask inside the field
    edge_contact: float           # fraction of the field's border band covered by the mask
    area_fraction: float
    passed: bool
    message: str = ""


def coverage(target_mask: np.ndarray, collimation: Collimation) -> float:
    """Fraction of the mask's pixels (centres) inside the collimated field (1.0 for an empty mask)."""
    mask = binary_mask("target mask", target_mask)
    total = int(mask.sum())
    if total == 0:
        return 1.0
    field = collimation.field_mask(mask.shape[1], mask.shape[0])
    return float((mask & field).sum() / total)


def edge_contact(mask: np.ndarray, collimation: Collimation, band_px: float = 2.0) -> float:
    """Fraction of the field's inner border band (within `band_px` of the field's edge, and not
    at the detector's own edge) that the mask covers: a target cut by the collimator touches it."""
    mask = binary_mask("mask", mask)
    height, width = mask.shape
    if not collimation.enabled:
        return 0.0
    cols = np.arange(width, dtype=float)[None, :] + 0.5
    rows = np.arange(height, dtype=float)[:, None] + 0.5
    field = collimation.field_mask(width, height)
    near = np.zeros_like(field)
    for edge, coordinate, at_detector_edge in (
            (collimation.col_min_px, cols, collimation.col_min_px <= 0),
            (collimation.col_max_px, cols, collimation.col_max_px >= width),
            (collimation.row_min_px, rows, collimation.row_min_px <= 0),
            (collimation.row_max_px, rows, collimation.row_max_px >= height)):
        if not at_detector_edge:  # the detector edge is not the collimator's doing
            near |= np.abs(coordinate - edge) <= band_px
    band = field & near
    if not band.any():
        return 0.0
    return float((mask & band).sum() / band.sum())


def check_coverage(target_mask: np.ndarray, collimation: Collimation, policy: CollimationPolicy | None = None,
                   collimated_mask: np.ndarray | None = None) -> CoverageCheck:
    """Post-acquisition check. `target_mask`: the target without collimation (ground truth, or
    the previous wider image's mask resampled to this view); `collimated_mask`: the mask
    segmented in the collimated image, for the edge-contact test (defaults to `target_mask`)."""
    policy = policy or CollimationPolicy()
    mask = binary_mask("target mask", target_mask)
    covered = coverage(mask, collimation)
    contact = edge_contact(mask if collimated_mask is None else collimated_mask, collimation, policy.edge_band_px)
    passed = covered >= policy.min_coverage and contact <= policy.max_edge_contact
    reasons = []
    if covered < policy.min_coverage:
        reasons.append(f"coverage {100 * covered:.1f}% < {100 * policy.min_coverage:.0f}%")
    if contact > policy.max_edge_contact:
        reasons.append(f"the target touches {100 * contact:.1f}% of the collimator edge")
    area = collimation.area_fraction(mask.shape[1], mask.shape[0])
    return CoverageCheck(covered, contact, area, passed, "; ".join(reasons))
