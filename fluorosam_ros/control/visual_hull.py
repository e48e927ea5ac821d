"""Image-only localisation: binary masks from >= 2 posed views carved on a voxel grid.

A voxel belongs to the visual hull when, in every view that sees it, its centre projects into
the mask. The hull contains the object (for exact masks and poses) and its centroid and box
locate the structure in 3-D without any prior. Pixel convention (DeepDRR): pixel (r, c)
covers [c, c+1) x [r, r+1), so a continuous projection (u, v) falls in pixel (floor v, floor u).

Carving is coarse-to-fine: a coarse grid over a region derived from the views (or given),
carved against masks dilated by the coarse voxel's footprint so that no part of the object is
lost, then a fine grid over the coarse survivors only. The fine carve uses the masks dilated by
`dilation_px` (default 1 px), which absorbs sub-pixel pose and segmentation error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..evaluation.metrics import dice
from ..geometry.camera import CameraProjection
from ..geometry.carm import CArmState
from ..geometry.transforms import angle_between_deg, apply
from .safety import PlanningInputError, binary_mask, finite_array, finite_scalar
from .structure import LocalisedStructure

log = logging.getLogger(__name__)


class LocalisationError(RuntimeError):
    """The structure could not be localised (too few or too similar views, empty hull...)."""


@dataclass(frozen=True)
class PosedMask:
    """A binary mask of the structure in one image, with the camera that took the image.

    `valid` marks where the image says anything at all (the exposed, collimated field); outside
    it the mask's zeros are "unknown", not "empty", so they never carve. None = the whole image.
    """

    mask: np.ndarray
    camera: CameraProjection
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = (self.camera.sensor_height, self.camera.sensor_width)
        object.__setattr__(self, "mask", binary_mask("mask", self.mask, shape))
        if self.valid is not None:
            object.__setattr__(self, "valid", binary_mask("valid region", self.valid, shape))
            object.__setattr__(self, "mask", self.mask & self.valid)

    @classmethod
    def from_state(cls, mask: np.ndarray, state: CArmState) -> "PosedMask":
        """A mask of an image acquired at `state` (its collimation bounds what was seen)."""
        camera = state.camera()
        valid = None
        if state.collimation.enabled:
            valid = state.collimation.field_mask(camera.sensor_width, camera.sensor_height)
        return cls(mask, camera, valid)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    @property
    def empty(self) -> bool:
        return not self.mask.any()

    def valid_region(self) -> np.ndarray:
        return np.ones(self.shape, dtype=bool) if self.valid is None else self.valid

    def truncated(self) -> bool:
        """True when the mask touches the border of what was seen: part of it may be cut off."""
        valid = self.valid_region()
        border = valid & ~ndimage.binary_erosion(valid, border_value=0)
        return bool((self.mask & border).any())

    def centroid_px(self) -> np.ndarray:
        """(col, row) of the mask's centroid in continuous pixel coordinates."""
        rows, cols = np.nonzero(self.mask)
        if len(rows) == 0:
            raise LocalisationError("the mask is empty")
        return np.array([cols.mean() + 0.5, rows.mean() + 0.5])

    def ray_through(self, col_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source, unit direction) of the ray through continuous pixel (col, row), world mm."""
        target = self.camera.index_to_world_on_detector(np.array(col_row[0]), np.array(col_row[1]))
        direction = target - self.camera.source_world
        return self.camera.source_world.copy(), direction / np.linalg.norm(direction)


@dataclass(frozen=True)
class HullConfig:
    voxel_size_mm: float = 2.0
    coarse_voxel_mm: float = 8.0
    dilation_px: float = 1.0
    # a voxel must be inside the field of at least this many views; 0 = all of them (the common
    # field of view: each added view can then only remove voxels). Lower it to localise a
    # structure that some views cut off (those views are reported as truncated).
    min_views_seen: int = 0
    min_view_angle_deg: float = 10.0  # views closer than this cannot resolve depth
    max_voxels: int = 3_000_000      # per grid; the voxel size grows (logged) to respect it
    keep_largest_component: bool = False

    def __post_init__(self) -> None:
        finite_scalar("voxel_size_mm", self.voxel_size_mm, minimum=1e-3)
        finite_scalar("coarse_voxel_mm", self.coarse_voxel_mm, minimum=self.voxel_size_mm)
        finite_scalar("dilation_px", self.dilation_px, minimum=0.0)
        finite_scalar("min_view_angle_deg", self.min_view_angle_deg, minimum=0.0, maximum=90.0)
        if self.min_views_seen < 0 or self.max_voxels < 1000:
            raise PlanningInputError("min_views_seen must be >= 0 and max_voxels >= 1000")


@dataclass(frozen=True)
class VisualHull:
    """The carved occupancy grid and how well it explains the views."""

    occupancy: np.ndarray            # (I, J, K) bool
    world_from_grid: np.ndarray      # 4x4: grid index -> voxel centre, world mm (axis aligned)
    voxel_size_mm: float
    silhouette_dice: tuple[float, ...]  # per view: re-projected hull vs mask (1 = consistent)
    max_view_angle_deg: float        # widest angle between two viewing directions (folded to <= 90)
    truncated_views: tuple[int, ...]
    clipped_by_bounds: bool          # the hull reached the edge of the carving region
    confidence: float
    details: dict = field(default_factory=dict)

    def points_world(self) -> np.ndarray:
        return apply(self.world_from_grid, np.argwhere(self.occupancy).astype(float))

    @property
    def voxel_count(self) -> int:
        return int(self.occupancy.sum())

    @property
    def volume_mm3(self) -> float:
        return self.voxel_count * self.voxel_size_mm ** 3

    def structure(self, name: str = "structure") -> LocalisedStructure:
        details = {"silhouette_dice": self.silhouette_dice, "max_view_angle_deg": self.max_view_angle_deg,
                   "truncated_views": self.truncated_views, "clipped_by_bounds": self.clipped_by_bounds,
                   "volume_mm3": self.volume_mm3, **self.details}
        return LocalisedStructure.from_points(name, "image", self.points_world(), self.voxel_size_mm,
                                              self.confidence, details)


# ---- geometry helpers ---------------------------------------------------------------------
def _folded_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two viewing lines (a view and its opposite give the same silhouette)."""
    angle = angle_between_deg(a, b)
    return min(angle, 180.0 - angle)


def max_view_angle_deg(cameras: Sequence[CameraProjection]) -> float:
    best = 0.0
    for i in range(len(cameras)):
        for j in range(i + 1, len(cameras)):
            best = max(best, _folded_angle_deg(cameras[i].principal_ray_world, cameras[j].principal_ray_world))
    return best


def closest_point_to_rays(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Least-squares point nearest to several lines (origin + t * unit direction)."""
    system = np.zeros((3, 3))
    rhs = np.zeros(3)
    for origin, direction in zip(origins, directions):
        projector = np.eye(3) - np.outer(direction, direction)
        system += projector
        rhs += projector @ origin
    return np.linalg.lstsq(system, rhs, rcond=None)[0]


def _px_per_mm(camera: CameraProjection, point_world: np.ndarray) -> float:
    """Image scale at the depth of `point_world` (pixels per mm perpendicular to the ray)."""
    focal_px = float(abs(camera.intrinsic[0, 0]))
    return focal_px / max(float(camera.depth_mm(point_world)[0]), 1e-6)


def default_bounds(views: Sequence[PosedMask]) -> tuple[np.ndarray, np.ndarray]:
    """A cube that holds the hull: centred where the rays through the masks' centroids meet, and
    large enough for the widest mask seen at that depth, stretched for narrow view angles (two
    cones at angle t intersect in a diamond whose long half-diagonal is r / sin(t / 2))."""
    rays = [view.ray_through(view.centroid_px()) for view in views]
    centre = closest_point_to_rays(np.array([r[0] for r in rays]), np.array([r[1] for r in rays]))
    radius_mm = 0.0
    for view in views:
        rows, cols = np.nonzero(view.mask)
        centroid = view.centroid_px()
        radius_px = np.sqrt(((cols + 0.5 - centroid[0]) ** 2 + (rows + 0.5 - centroid[1]) ** 2).max()) + 1.0
        radius_mm = max(radius_mm, radius_px / _px_per_mm(view.camera, centre))
    angle = max(max_view_angle_deg([v.camera for v in views]), 1.0)
    half = radius_mm * (1.0 / math.sin(math.radians(angle) / 2) + 0.5)
    return centre - half, centre + half


def _grid(lo: np.ndarray, hi: np.ndarray, voxel_mm: float, max_voxels: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(world_from_grid, shape) of an axis-aligned grid covering [lo, hi]; the voxel grows so
    that the grid has at most `max_voxels`."""
    extent = np.maximum(hi - lo, voxel_mm)
    count = float(np.prod(np.ceil(extent / voxel_mm)))
    if count > max_voxels:
        grown = voxel_mm * (count / max_voxels) ** (1.0 / 3.0) * 1.01
        log.info("visual hull: %.0f voxels at %.2f mm is too many; using %.2f mm", count, voxel_mm, grown)
        voxel_mm = grown
    shape = np.maximum(np.ceil(extent / voxel_mm).astype(int), 1)
    world_from_grid = np.eye(4)
    world_from_grid[:3, :3] *= voxel_mm
    world_from_grid[:3, 3] = (lo + hi) / 2 - (shape - 1) / 2 * voxel_mm
    return world_from_grid, shape, voxel_mm


def _carve(points: np.ndarray, views: Sequence[PosedMask], masks: Sequence[np.ndarray],
           min_views_seen: int) -> np.ndarray:
    keep = np.ones(len(points), dtype=bool)
    seen = np.zeros(len(points), dtype=np.int32)
    for view, mask in zip(views, masks):
        height, width = mask.shape
        uv = view.camera.project(points)
        in_front = view.camera.depth_mm(points) > 0
        cols = np.floor(uv[:, 0]).astype(np.int64, copy=False)
        rows = np.floor(uv[:, 1]).astype(np.int64, copy=False)
        visible = in_front & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        index = np.nonzero(visible)[0]
        if view.valid is not None:
            index = index[view.valid[rows[index], cols[index]]]
        inside = np.zeros(len(points), dtype=bool)
        inside[index] = mask[rows[index], cols[index]]
        seen_here = np.zeros(len(points), dtype=bool)
        seen_here[index] = True
        keep &= ~seen_here | inside
        seen += seen_here
    return keep & (seen >= min_views_seen)


def _dilated(view: PosedMask, radius_px: float) -> np.ndarray:
    if radius_px <= 0:
        return view.mask
    # distance of every pixel centre to the nearest mask pixel centre
    distance = ndimage.distance_transform_edt(~view.mask)
    dilated = distance <= radius_px
    return dilated & view.valid_region()


def reproject_points(points_world: np.ndarray, camera: CameraProjection, closing_px: int) -> np.ndarray:
    """Binary silhouette of a point cloud (voxel centres) in `camera`'s image; a closing by
    `closing_px` fills the gaps between projected centres without growing the outline."""
    height, width = camera.sensor_height, camera.sensor_width
    uv = camera.project(points_world)
    cols, rows = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    ok = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height) & (camera.depth_mm(points_world) > 0)
    image = np.zeros((height, width), dtype=bool)
    image[rows[ok], cols[ok]] = True
    if closing_px > 0:
        pad = closing_px + 1  # closing near the border must not erode against the edge
        padded = np.pad(image, pad)
        structure = ndimage.generate_binary_structure(2, 1)
        padded = ndimage.binary_closing(padded, structure, iterations=closing_px)
        image = padded[pad:-pad, pad:-pad]
    return image


# ---- the hull -----------------------------------------------------------------------------
def visual_hull(views: Sequence[PosedMask], config: HullConfig | None = None,
                bounds_world: tuple[np.ndarray, np.ndarray] | None = None) -> VisualHull:
    """Carve the visual hull of the masks. `bounds_world` = (min, max) corners of the region to
    carve (default: derived from the views). Raises LocalisationError when it cannot work."""
    config = config or HullConfig()
    views = list(views)
    if len(views) < 2:
        raise LocalisationError(
            f"a visual hull needs masks from >= 2 posed views, got {len(views)}; acquire a second view "
            "(control.views.propose_second_view)")
    for i, view in enumerate(views):
        if not isinstance(view, PosedMask):
            raise PlanningInputError(f"view {i} must be a PosedMask, got {type(view).__name__}")
        if view.empty:
            raise LocalisationError(f"the mask of view {i} is empty: the structure was not found there")
    cameras = [v.camera for v in views]
    min_seen = len(views) if config.min_views_seen == 0 else min(config.min_views_seen, len(views))
    angle = max_view_angle_deg(cameras)
    if angle < config.min_view_angle_deg:
        raise LocalisationError(
            f"the views are only {angle:.1f} deg apart (< {config.min_view_angle_deg} deg): depth is "
            "unresolved; acquire a view at a larger angle")

    if bounds_world is None:
        lo, hi = default_bounds(views)
    else:
        lo = finite_array("bounds min", bounds_world[0], (3,))
        hi = finite_array("bounds max", bounds_world[1], (3,))
        if np.any(hi <= lo):
            raise PlanningInputError("bounds_world must have max > min on every axis")

    # coarse pass, conservative: a voxel survives if any part of it may be inside every mask
    world_from_coarse, coarse_shape, coarse_mm = _grid(lo, hi, config.coarse_voxel_mm, config.max_voxels)
    coarse_points = apply(world_from_coarse, np.indices(coarse_shape).reshape(3, -1).T.astype(float))
    centre = (lo + hi) / 2
    coarse_masks = []
    for view in views:
        footprint_px = coarse_mm * math.sqrt(3) / 2 * _px_per_mm(view.camera, centre) * 1.25
        coarse_masks.append(_dilated(view, footprint_px + config.dilation_px))
    keep = _carve(coarse_points, views, coarse_masks, min_seen)
    if not keep.any():
        raise LocalisationError("the masks' back-projections do not intersect: the views disagree "
                                "(wrong poses, or different structures segmented)")
    kept = coarse_points[keep]
    fine_lo, fine_hi = kept.min(axis=0) - coarse_mm, kept.max(axis=0) + coarse_mm
    clipped = bool(np.any(fine_lo < lo - 1e-6) or np.any(fine_hi > hi + 1e-6))
    fine_lo, fine_hi = np.maximum(fine_lo, lo), np.minimum(fine_hi, hi)

    world_from_grid, shape, voxel_mm = _grid(fine_lo, fine_hi, config.voxel_size_mm, config.max_voxels)
    points = apply(world_from_grid, np.indices(shape).reshape(3, -1).T.astype(float))
    fine_masks = [_dilated(view, config.dilation_px) for view in views]
    occupancy = _carve(points, views, fine_masks, min_seen).reshape(tuple(shape))
    if not occupancy.any():
        raise LocalisationError("the visual hull is empty at the fine resolution")
    if config.keep_largest_component:
        labels, count = ndimage.label(occupancy)
        if count > 1:
            sizes = ndimage.sum(occupancy, labels, index=np.arange(1, count + 1))
            occupancy = labels == (int(np.argmax(sizes)) + 1)
    # the hull touching the carving region's faces means the region, not the masks, bounded it
    faces = np.zeros_like(occupancy)
    faces[[0, -1], :, :] = faces[:, [0, -1], :] = faces[:, :, [0, -1]] = True
    clipped = clipped or (bounds_world is not None and bool((occupancy & faces).any()))

    hull_points = apply(world_from_grid, np.argwhere(occupancy).astype(float))
    silhouette = []
    for view in views:
        closing = int(math.ceil(voxel_mm * _px_per_mm(view.camera, hull_points.mean(axis=0)) / 2)) + 1
        reprojected = reproject_points(hull_points, view.camera, closing) & view.valid_region()
        silhouette.append(dice(reprojected, view.mask))
    truncated = tuple(i for i, view in enumerate(views) if view.truncated())
    confidence = hull_confidence(silhouette, angle, bool(truncated), clipped)
    log.debug("visual hull: %d voxels of %.2f mm, dice %s, angle %.1f deg", occupancy.sum(), voxel_mm,
              np.round(silhouette, 3), angle)
    return VisualHull(occupancy, world_from_grid, voxel_mm, tuple(float(d) for d in silhouette), angle,
                      truncated, clipped, confidence, {"bounds_world": (lo, hi)})


def hull_confidence(silhouette_dice: Sequence[float], view_angle_deg: float, truncated: bool,
                    clipped: bool) -> float:
    """A score in [0, 1]: the worst view's silhouette consistency, scaled down when the views
    are close in angle (depth poorly resolved below ~45 deg) and halved when a mask was cut off
    by the field or the hull by the region (its extent is then a lower bound only)."""
    score = float(min(silhouette_dice)) if len(silhouette_dice) else 0.0
    score *= min(1.0, math.sin(math.radians(view_angle_deg)) / math.sin(math.radians(45.0)))
    if truncated or clipped:
        score *= 0.5
    return float(np.clip(score, 0.0, 1.0))
