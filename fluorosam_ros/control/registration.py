"""Fused localisation: correct the twin's registration by 2-D/3-D alignment to observed masks.

The twin structure's points are projected through each posed view and splatted (bilinear, so
the objective is smooth in the pose) into a soft silhouette; a 6-DoF rigid correction, rotating
about the structure's centroid, maximises the soft Dice between those silhouettes and the
masks. Steps:
  1. translation from the silhouette centroids (a linear least-squares triangulation of the 2-D
     centroid offsets through each view's projection Jacobian), which removes most of a large
     shift cheaply and keeps the optimiser inside the basin;
  2. Powell over the 6 parameters, coarse-to-fine in the blur of both images.
When every view looks along about the same direction (one view, or views within
`SINGLE_DIRECTION_DEG` of each other), the translation along that direction is held at the
prior's: a silhouette constrains depth only through magnification, far too weakly against
segmentation noise, and the optimiser otherwise wanders along the beam to the bounds (the
image still matches, the 3-D position does not). That leaves 5 parameters.
Masks are compared on a reduced grid (`resolution_px`), which is all the alignment needs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage, optimize

from ..evaluation.metrics import dice
from ..geometry.camera import CameraProjection
from ..geometry.transforms import apply, rigid, rotation_about_axis
from .safety import PlanningInputError, finite_scalar
from .twin_prior import TwinPrior
from .visual_hull import PosedMask, reproject_points

log = logging.getLogger(__name__)

SINGLE_DIRECTION_DEG = 10.0  # views closer than this (folded) share one direction: depth is held


@dataclass(frozen=True)
class RegistrationConfig:
    resolution_px: int = 64                      # masks are compared at about this many px per side
    min_aligned_dice: float = 0.8                # below this after alignment the masks are not trusted
    blur_sigmas_px: tuple[float, ...] = (3.0, 1.5, 0.75)  # coarse-to-fine, in reduced pixels
    max_points: int = 6000                       # per structure, randomly subsampled (seeded)
    max_translation_mm: float = 60.0             # the correction never goes beyond these
    max_rotation_deg: float = 20.0
    max_evaluations_per_level: int = 400
    translation_scale_mm: float = 4.0            # optimiser units: 1 unit = this many mm ...
    rotation_scale_deg: float = 2.0              # ... or this many degrees
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resolution_px < 8 or self.max_points < 100 or not self.blur_sigmas_px:
            raise PlanningInputError("resolution_px >= 8, max_points >= 100 and >= 1 blur level are required")
        for name in ("max_translation_mm", "max_rotation_deg", "translation_scale_mm", "rotation_scale_deg"):
            finite_scalar(name, getattr(self, name), minimum=1e-6)


@dataclass(frozen=True)
class RegistrationResult:
    world_from_twin: np.ndarray        # the corrected registration
    correction: np.ndarray             # world_from_world: corrected = correction @ initial
    initial_world_from_twin: np.ndarray
    dice_before: tuple[float, ...]     # per view, full-resolution silhouette Dice
    dice_after: tuple[float, ...]
    translation_correction_mm: float   # size of the correction at the structures' centroid
    rotation_correction_deg: float
    evaluations: int
    seconds: float                     # wall time
    cpu_seconds: float                 # this process's CPU time (what it costs on an idle core)
    improved: bool                     # False: the correction was rejected, initial kept
    message: str = ""

    @property
    def confidence(self) -> float:
        """The worst view's silhouette Dice after alignment."""
        return float(min(self.dice_after)) if self.dice_after else 0.0


@dataclass
class _Target:
    points_world: np.ndarray   # under the initial registration
    views: list[PosedMask]


def rigid_correction(params: np.ndarray, centre: np.ndarray, translation_scale_mm: float,
                     rotation_scale_deg: float) -> np.ndarray:
    """world_from_world for optimiser parameters (3 translations, then a rotation vector, in
    units of the scales): rotate about `centre`, then translate."""
    translation = params[:3] * translation_scale_mm
    rotation_vector = np.radians(params[3:] * rotation_scale_deg)
    angle = float(np.linalg.norm(rotation_vector))
    rotation = np.eye(3) if angle < 1e-12 else rotation_about_axis(rotation_vector, angle)
    return rigid(translation=centre + translation) @ rigid(rotation) @ rigid(translation=-centre)


class _ViewImage:
    """One view on the reduced grid: the blurred mask per level and the projection scale."""

    def __init__(self, view: PosedMask, resolution_px: int, sigmas: Sequence[float]) -> None:
        self.view = view
        height, width = view.shape
        self.factor = max(1, int(round(max(height, width) / resolution_px)))
        self.shape = (height // self.factor, width // self.factor)
        crop = (self.shape[0] * self.factor, self.shape[1] * self.factor)

        def reduce(image: np.ndarray) -> np.ndarray:
            image = image[:crop[0], :crop[1]].astype(np.float64)
            return image.reshape(self.shape[0], self.factor, self.shape[1], self.factor).mean(axis=(1, 3))

        self.valid = reduce(view.valid_region())
        mask = reduce(view.mask)
        self.blurred_masks = [ndimage.gaussian_filter(mask, s) * self.valid for s in sigmas]

    def silhouette(self, points_world: np.ndarray, sigma: float) -> np.ndarray:
        uv = self.view.camera.project(points_world) / self.factor - 0.5  # pixel-centre coordinates
        height, width = self.shape
        base = np.floor(uv).astype(np.int64)
        frac = uv - base
        density = np.zeros(height * width)
        for dc, dr in ((0, 0), (1, 0), (0, 1), (1, 1)):
            cols, rows = base[:, 0] + dc, base[:, 1] + dr
            weight = (frac[:, 0] if dc else 1 - frac[:, 0]) * (frac[:, 1] if dr else 1 - frac[:, 1])
            ok = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
            density += np.bincount(rows[ok] * width + cols[ok], weights=weight[ok], minlength=height * width)
        # soft occupancy: a pixel hit by about one point is inside the silhouette
        occupancy = 1.0 - np.exp(-2.0 * density.reshape(height, width))
        return ndimage.gaussian_filter(occupancy, sigma) * self.valid


def _soft_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 0.0 if total <= 0 else float(2.0 * (a * b).sum() / total)


def _full_dice(points_world: np.ndarray, view: PosedMask, spacing_mm: float) -> float:
    camera = view.camera
    centre = points_world.mean(axis=0)
    px_per_mm = abs(camera.intrinsic[0, 0]) / max(float(camera.depth_mm(centre)[0]), 1e-6)
    closing = int(math.ceil(spacing_mm * px_per_mm / 2)) + 1
    return dice(reproject_points(points_world, camera, closing) & view.valid_region(), view.mask)


def silhouette_dice(prior: TwinPrior, name: str, view: PosedMask) -> float:
    """Dice between the twin structure's projection (under `prior`'s registration) and a mask:
    whether the mask shows what the twin says is there."""
    points, spacing = prior.structure_points_twin(name)
    return _full_dice(apply(prior.world_from_twin, points), view, spacing)


def _centroid_shift(targets: Sequence[_Target], images: Sequence[Sequence[_ViewImage]],
                    sigma: float) -> np.ndarray:
    """Least-squares 3-D translation that moves each projected silhouette's centroid onto its
    mask's centroid (linearised at the structure centroid)."""
    rows_a, rows_b = [], []
    for target, view_images in zip(targets, images):
        centre = target.points_world.mean(axis=0)
        for image in view_images:
            silhouette = image.silhouette(target.points_world, sigma)
            mask = image.blurred_masks[-1]
            if silhouette.sum() < 1e-6 or mask.sum() < 1e-6:
                continue
            grid_r, grid_c = np.indices(silhouette.shape)
            offset = np.array([(mask * grid_c).sum() / mask.sum() - (silhouette * grid_c).sum() / silhouette.sum(),
                               (mask * grid_r).sum() / mask.sum() - (silhouette * grid_r).sum() / silhouette.sum()])
            jacobian = np.zeros((2, 3))
            base = image.view.camera.project(centre)[0]
            for axis in range(3):
                step = np.zeros(3)
                step[axis] = 1.0
                jacobian[:, axis] = (image.view.camera.project(centre + step)[0] - base) / image.factor
            rows_a.append(jacobian)
            rows_b.append(offset)
    if not rows_a:
        return np.zeros(3)
    shift, *_ = np.linalg.lstsq(np.vstack(rows_a), np.concatenate(rows_b), rcond=None)
    return shift


def observable_translation_axes(cameras: Sequence[CameraProjection]) -> np.ndarray:
    """Orthonormal rows spanning the translations the views can observe: all three, or, when
    every beam is within `SINGLE_DIRECTION_DEG` of the first (either sense), the two across it."""
    if not cameras:
        return np.eye(3)
    rays = np.array([np.asarray(camera.principal_ray_world, dtype=float) for camera in cameras])
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    folded = np.degrees(np.arccos(np.clip(np.abs(rays @ rays[0]), 0.0, 1.0)))
    if np.any(folded > SINGLE_DIRECTION_DEG):
        return np.eye(3)
    signs = np.sign(rays @ rays[0])
    signs[signs == 0] = 1.0
    beam = (rays * signs[:, None]).mean(axis=0)
    beam /= np.linalg.norm(beam)
    # the two right singular vectors orthogonal to the beam
    return np.linalg.svd(beam[None, :])[2][1:]


def register_to_masks(prior: TwinPrior, observations: Mapping[str, Sequence[PosedMask]],
                      config: RegistrationConfig | None = None) -> RegistrationResult:
    """Correct `prior.world_from_twin` so that its structures' projections match the masks.
    `observations` maps structure names to the posed masks of that structure (>= 1 view;
    with one view the depth is only weakly constrained, through magnification)."""
    config = config or RegistrationConfig()
    start, start_cpu = time.perf_counter(), time.process_time()
    if not observations:
        raise PlanningInputError("registration needs at least one structure with masks")
    rng = np.random.default_rng(config.seed)
    targets: list[_Target] = []
    spacings = []
    for name, views in observations.items():
        views = list(views)
        if not views:
            raise PlanningInputError(f"no views for structure {name!r}")
        if any(v.empty for v in views):
            raise PlanningInputError(f"a mask of {name!r} is empty: it cannot drive the registration")
        points = prior.structure_points_world(name)
        if len(points) > config.max_points:
            points = points[rng.choice(len(points), config.max_points, replace=False)]
        targets.append(_Target(points, views))
        spacings.append(prior.structure_points_twin(name)[1])
    centre = np.concatenate([t.points_world for t in targets]).mean(axis=0)
    images = [[_ViewImage(v, config.resolution_px, config.blur_sigmas_px) for v in t.views] for t in targets]
    evaluations = 0

    def score(params: np.ndarray, level: int) -> float:
        nonlocal evaluations
        evaluations += 1
        correction = rigid_correction(params, centre, config.translation_scale_mm, config.rotation_scale_deg)
        values = []
        for target, view_images in zip(targets, images):
            moved = apply(correction, target.points_world)
            for image in view_images:
                values.append(_soft_dice(image.silhouette(moved, config.blur_sigmas_px[level]),
                                         image.blurred_masks[level]))
        return float(np.mean(values))

    # the optimiser's parameters: translation along the observable axes (3, or 2 across a
    # single beam direction) and the rotation vector; `full` maps them to the 6 of `rigid_correction`
    axes = observable_translation_axes([v.camera for t in targets for v in t.views])
    k = len(axes)

    def full(reduced: np.ndarray) -> np.ndarray:
        return np.concatenate([reduced[:k] @ axes, reduced[k:]])

    params = np.zeros(k + 3)
    # 1. translation from the centroids (twice: the linearisation is refined once)
    for _ in range(2):
        correction = rigid_correction(full(params), centre, config.translation_scale_mm, config.rotation_scale_deg)
        moved = [_Target(apply(correction, t.points_world), t.views) for t in targets]
        params[:k] += axes @ _centroid_shift(moved, images, config.blur_sigmas_px[0]) / config.translation_scale_mm
    if score(full(params), 0) < score(np.zeros(6), 0):
        params = np.zeros(k + 3)
    # 2. Powell, coarse-to-fine
    limits = np.array([config.max_translation_mm / config.translation_scale_mm] * k
                      + [config.max_rotation_deg / config.rotation_scale_deg] * 3)
    params = np.clip(params, -limits, limits)
    for level in range(len(config.blur_sigmas_px)):
        result = optimize.minimize(lambda p: -score(full(p), level), params, method="Powell",
                                   bounds=list(zip(-limits, limits)),
                                   options={"maxfev": config.max_evaluations_per_level, "xtol": 1e-2, "ftol": 1e-5})
        params = np.asarray(result.x, dtype=float)

    correction = rigid_correction(full(params), centre, config.translation_scale_mm, config.rotation_scale_deg)
    spacing = float(np.mean(spacings))
    before, after = [], []
    for target in targets:
        moved = apply(correction, target.points_world)
        for view in target.views:
            before.append(_full_dice(target.points_world, view, spacing))
            after.append(_full_dice(moved, view, spacing))
    improved = float(np.mean(after)) >= float(np.mean(before))
    message = ""
    if improved and float(np.mean(after)) < config.min_aligned_dice:
        # masks that the twin's structure cannot explain even after alignment (a wrong or
        # partial segmentation) must not drag the twin away: trust the prior instead
        improved = False
        message = (f"the masks do not match the twin's structure (aligned silhouette Dice "
                   f"{np.mean(after):.3f} < {config.min_aligned_dice:g}); correction rejected")
        log.warning("twin registration: %s", message)
        correction, after = np.eye(4), list(before)
    elif not improved:
        # never make the prior worse than it was: keep the initial registration
        message = (f"alignment did not improve the silhouette Dice ({np.mean(before):.3f} -> "
                   f"{np.mean(after):.3f}); correction rejected")
        log.warning("twin registration: %s", message)
        correction, after = np.eye(4), list(before)
    translation_mm = float(np.linalg.norm(apply(correction, centre) - centre))
    cosine = float(np.clip((np.trace(correction[:3, :3]) - 1.0) / 2.0, -1.0, 1.0))
    return RegistrationResult(correction @ prior.world_from_twin, correction, prior.world_from_twin.copy(),
                              tuple(before), tuple(after), translation_mm, math.degrees(math.acos(cosine)),
                              evaluations, time.perf_counter() - start, time.process_time() - start_cpu,
                              improved, message)
