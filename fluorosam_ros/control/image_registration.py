"""Intensity-based 2-D/3-D registration of the twin's CT to the live frames.

The fused mode's silhouette alignment (`registration`) needs masks good enough to explain the
twin's structure; a poor segmentation is rightly refused there, and the twin then keeps its
registration error. The frame itself still shows the anatomy (bone, air and soft-tissue
edges), and the twin is a CT of the same patient: a DRR of the twin rendered under the right
registration lines up with the frame. This module finds that registration, before the masks
are consulted, as classical 2-D/3-D registration does:
- the twin's CT is block-averaged (to `voxels_mm`, per level) and rendered on a reduced detector grid
  (`resolution_px` per side), a few milliseconds per DRR on one core;
- the similarity is the gradient correlation (the mean normalised cross-correlation of the
  column and row gradients) inside the frame's exposed field: insensitive to the display
  window, detector gain and offset, and to the collimator, whose edges are left out;
- the optimiser is Powell over a rigid correction (rotation about the target, translation), on
  two blur levels; with every beam along one direction the depth translation is held at the
  prior's, as the silhouette alignment does (a single view constrains depth only through
  magnification);
- the result is kept only when the aligned DRR explains the frames (gradient correlation >=
  `min_similarity`) and better than the prior did (by >= `min_gain`): a frame the twin cannot
  explain (wrong patient, instruments, a moved patient) never drags the twin away.
Frames: `world_from_twin` as in `twin_prior`; a DRR of the twin placed by T is rendered with
the camera `index_from_world @ T`, which views the twin in its own frame.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage, optimize

from ..geometry.camera import CameraProjection
from ..geometry.carm import CArmState
from ..geometry.collimation import Collimation
from ..geometry.transforms import apply
from ..twin.patient import Patient
from .registration import observable_translation_axes, rigid_correction
from .safety import PlanningInputError, finite_scalar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageRegistrationConfig:
    enabled: bool = True
    resolutions_px: tuple[int, ...] = (32, 48)   # coarse-to-fine: DRR and frame compared on about
    blur_sigmas_px: tuple[float, ...] = (1.5, 0.75)  # this many px per side, blurred by this much
    search_step_mm: float = 8.0        # the coarse grid search over the translation, before Powell ...
    search_steps: int = 3              # ... this many steps either side of the prior (per axis)
    voxels_mm: tuple[float, ...] = (6.0, 3.0)  # per level, the twin's CT block-averaged to about this
    edge_margin_px: int = 2            # reduced pixels left out along the collimator's edges
    min_similarity: float = 0.7        # gradient correlation the aligned DRR must reach
    min_gain: float = 0.02             # ... and its gain over the prior's
    max_translation_mm: float = 60.0
    max_rotation_deg: float = 20.0
    max_evaluations_per_level: tuple[int, ...] = (200, 100)
    starts: int = 3                    # Powell on the coarsest level from this many best grid points
    aligned_similarity: float = 0.8    # a prior this similar on the coarsest level skips the grid search
    max_frames: int = 2                # the newest frames of a request registered together
    threads: int = 0                   # DRR threads (0: every core)
    translation_scale_mm: float = 4.0  # optimiser units: 1 unit = this many mm ...
    rotation_scale_deg: float = 2.0    # ... or this many degrees

    def __post_init__(self) -> None:
        # ROS parameters arrive as float arrays: the grid sizes and budgets are counts
        for name in ("resolutions_px", "max_evaluations_per_level"):
            values = tuple(getattr(self, name))
            if any(not float(v).is_integer() for v in values):
                raise PlanningInputError(f"{name} must be whole numbers, got {values}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        object.__setattr__(self, "blur_sigmas_px", tuple(float(v) for v in self.blur_sigmas_px))
        if (not self.resolutions_px or len(self.resolutions_px) != len(self.blur_sigmas_px)
                or len(self.max_evaluations_per_level) != len(self.resolutions_px) or self.starts < 1
                or self.max_frames < 1 or self.threads < 0
                or min(self.resolutions_px) < 16 or min(self.blur_sigmas_px) < 0 or self.edge_margin_px < 0):
            raise PlanningInputError("one blur sigma (>= 0) and evaluation budget per resolution (>= 16 px), "
                                     "starts >= 1 and edge_margin_px >= 0 are required")
        object.__setattr__(self, "voxels_mm", tuple(float(v) for v in self.voxels_mm))
        if len(self.voxels_mm) != len(self.resolutions_px):
            raise PlanningInputError("one voxel size per resolution is required")
        for voxel in self.voxels_mm:
            finite_scalar("voxels_mm", voxel, minimum=0.1)
        for name in ("max_translation_mm", "max_rotation_deg", "translation_scale_mm",
                     "rotation_scale_deg"):
            finite_scalar(name, getattr(self, name), minimum=1e-6)
        finite_scalar("min_similarity", self.min_similarity, minimum=-1.0, maximum=1.0)
        finite_scalar("min_gain", self.min_gain, minimum=0.0, maximum=2.0)


@dataclass(frozen=True)
class ImageRegistrationResult:
    world_from_twin: np.ndarray        # the corrected registration (the initial one when rejected)
    correction: np.ndarray             # world_from_world: corrected = correction @ initial
    similarity_before: tuple[float, ...]   # per frame, gradient correlation at the finest level
    similarity_after: tuple[float, ...]
    translation_correction_mm: float   # at the rotation centre
    rotation_correction_deg: float
    evaluations: int
    seconds: float
    improved: bool                     # False: rejected, the initial registration kept
    message: str = ""

    @property
    def similarity(self) -> float:
        return float(np.mean(self.similarity_after)) if self.similarity_after else 0.0


def downsampled_patient(patient: Patient, voxel_mm: float) -> Patient:
    """The CT block-averaged by whole voxels to about `voxel_mm` (no labels): DRRs for
    registration need the bones' shapes, not the CT's full resolution."""
    factors = np.maximum(1, np.round(voxel_mm / patient.spacing_mm)).astype(int)
    if np.all(factors == 1):
        return Patient(patient.patient_id, patient.hu, patient.world_from_voxel)
    shape = np.asarray(patient.shape) // factors
    hu = patient.hu[:shape[0] * factors[0], :shape[1] * factors[1], :shape[2] * factors[2]]
    hu = hu.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2]).mean(axis=(1, 3, 5))
    # voxel i of the reduced grid is centred on the block of original voxels i*f .. i*f+f-1
    original_from_reduced = np.diag([*factors.astype(float), 1.0])
    original_from_reduced[:3, 3] = (factors - 1) / 2.0
    return Patient(patient.patient_id, hu.astype(np.float32), patient.world_from_voxel @ original_from_reduced)


def reduced_camera(camera: CameraProjection, factor: int, world_from_twin: np.ndarray | None = None
                   ) -> CameraProjection:
    """`camera` on a grid `factor` times coarser (pixel edges kept), viewing the twin placed by
    `world_from_twin` (so that the twin is rendered in its own frame)."""
    scale = np.diag([1.0 / factor, 1.0 / factor, 1.0])
    matrix = scale @ camera.index_from_world
    if world_from_twin is not None:
        matrix = matrix @ world_from_twin
    return CameraProjection(matrix, camera.sensor_width // factor, camera.sensor_height // factor,
                            camera.source_to_detector_distance_mm)


def _reduce(image: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)[:shape[0] * factor, :shape[1] * factor]
    return image.reshape(shape[0], factor, shape[1], factor).mean(axis=(1, 3))


def _gradients(image: np.ndarray, sigma: float, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column and row gradients of `image` smoothed by `sigma`. With `valid`, the smoothing is a
    normalised convolution over the valid pixels only: the collimator's edge (or whatever lies
    outside) never bleeds into the gradients, so the compared field need not be eroded by
    the blur's radius."""
    if valid is None:
        smooth = ndimage.gaussian_filter(image, sigma) if sigma > 0 else image
    elif sigma > 0:
        weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma)
        smooth = ndimage.gaussian_filter(np.where(valid, image, 0.0), sigma) / np.maximum(weight, 1e-6)
        smooth = np.where(weight > 1e-3, smooth, 0.0)
    else:
        smooth = np.where(valid, image, 0.0)
    return ndimage.sobel(smooth, axis=1), ndimage.sobel(smooth, axis=0)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return 0.0 if denominator <= 1e-12 else float((a * b).sum() / denominator)


def gradient_correlation(fixed: tuple[np.ndarray, np.ndarray], moving: tuple[np.ndarray, np.ndarray],
                         valid: np.ndarray) -> float:
    """Mean NCC of the column and row gradients over `valid` pixels (in [-1, 1])."""
    return 0.5 * (_ncc(fixed[0][valid], moving[0][valid]) + _ncc(fixed[1][valid], moving[1][valid]))


MIN_COMPARED_PX = 32


class _FrameLevel:
    """One frame on one reduced grid. The grid's pitch follows the exposed field, not the
    detector: a tightly collimated frame is compared at a finer pitch, and the DRR is traced
    only inside the field, so every level costs about `resolution_px`^2 rays."""

    def __init__(self, image: np.ndarray, collimation: Collimation, resolution_px: int, sigma: float,
                 edge_margin_px: int) -> None:
        height, width = image.shape
        exposed = collimation.field_mask(width, height)
        rows, cols = np.nonzero(np.any(exposed, axis=1))[0], np.nonzero(np.any(exposed, axis=0))[0]
        extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) if len(rows) else max(height, width)
        self.factor = max(1, int(round(extent / resolution_px)))
        self.shape = (height // self.factor, width // self.factor)
        self.collimation = collimation.scaled(1.0 / self.factor)
        self.sigma = sigma
        self.valid = _reduce(exposed, self.factor, self.shape) > 0.999  # fully exposed reduced pixels
        # the Sobel stencil and the collimator's partial pixels: a thin rim, whatever the blur
        self.compared = ndimage.binary_erosion(self.valid, iterations=1 + edge_margin_px, border_value=0)
        self.gradients = _gradients(_reduce(image, self.factor, self.shape), sigma, self.valid)

    @property
    def usable(self) -> bool:
        return int(self.compared.sum()) >= MIN_COMPARED_PX

    def similarity(self, drr: np.ndarray) -> float:
        return gradient_correlation(self.gradients, _gradients(drr, self.sigma, self.valid), self.compared)


class _FrameImage:
    """One frame, validated, on every level's grid."""

    def __init__(self, image: np.ndarray, state: CArmState, config: ImageRegistrationConfig) -> None:
        image = np.asarray(image, dtype=np.float64)
        if image.ndim == 3:
            image = image.mean(axis=2)
        height, width = image.shape
        camera = state.camera()
        if (width, height) != (camera.sensor_width, camera.sensor_height):
            raise PlanningInputError(f"frame {width}x{height} px does not match its state's detector "
                                     f"{camera.sensor_width}x{camera.sensor_height} px")
        if not np.all(np.isfinite(image)):
            raise PlanningInputError("the frame has non-finite pixels")
        self.camera = camera
        self.levels = [_FrameLevel(image, state.collimation, resolution, sigma, config.edge_margin_px)
                       for resolution, sigma in zip(config.resolutions_px, config.blur_sigmas_px)]

    @property
    def usable(self) -> bool:
        return all(level.usable for level in self.levels)


@contextlib.contextmanager
def _render_threads(threads: int):
    """Render on `threads` threads (0: numba's default, every core). Two threads halve a DRR's
    time on an idle machine; on a machine whose cores are all busy, one avoids waiting for a
    second core at every DRR."""
    import numba

    if threads <= 0:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class ImageRegistrar:
    """Registers the twin (its CT) to frames; keeps the reduced CT and its renderer."""

    def __init__(self, patient: Patient, config: ImageRegistrationConfig | None = None) -> None:
        from ..twin.renderer import CpuRenderer  # numba compiles on first use

        self.config = config or ImageRegistrationConfig()
        by_size = {size: CpuRenderer(downsampled_patient(patient, size)) for size in set(self.config.voxels_mm)}
        self.renderers = [by_size[size] for size in self.config.voxels_mm]  # per level

    def drr(self, camera: CameraProjection, factor: int, world_from_twin: np.ndarray,
            collimation: Collimation | None = None, level: int = -1) -> np.ndarray:
        """Line-integral DRR of the twin placed by `world_from_twin`, on the grid `factor` times
        coarser than `camera`'s, traced inside `collimation` (in that grid's pixels) only, through
        `level`'s volume."""
        camera = reduced_camera(camera, factor, world_from_twin)
        if collimation is not None:
            collimation = collimation.clipped(camera.sensor_width, camera.sensor_height)
        return self.renderers[level].render_camera(camera, collimation, None).line_integral

    def register(self, world_from_twin: np.ndarray, frames: Sequence[tuple[np.ndarray, CArmState]],
                 centre_world: np.ndarray) -> ImageRegistrationResult:
        """Correct `world_from_twin` so that the twin's DRRs match `frames` ((image, state)
        pairs); rotations turn about `centre_world` (the target)."""
        config = self.config
        started = time.perf_counter()
        images = [_FrameImage(image, state, config) for image, state in frames]
        images = [image for image in images if image.usable]
        initial = np.asarray(world_from_twin, dtype=float)
        if not images:
            return self._rejected(initial, (), (), 0, started, "no frame has enough exposed field to register")
        centre = np.asarray(centre_world, dtype=float)
        axes = observable_translation_axes([image.camera for image in images])
        k = len(axes)
        evaluations = 0

        def per_frame(reduced: np.ndarray, level: int) -> list[float]:
            nonlocal evaluations
            evaluations += 1
            candidate = self._candidate(reduced, axes, centre) @ initial
            values = []
            with _render_threads(config.threads):
                for image in images:
                    grid = image.levels[level]
                    drr = self.drr(image.camera, grid.factor, candidate, grid.collimation, level)
                    values.append(grid.similarity(drr))
            return values

        limits = np.array([config.max_translation_mm / config.translation_scale_mm] * k
                          + [config.max_rotation_deg / config.rotation_scale_deg] * 3)
        params = np.zeros(k + 3)
        finest = len(config.resolutions_px) - 1
        before = per_frame(params, finest)

        def search(start: np.ndarray, level: int, evaluations: int) -> tuple[np.ndarray, float]:
            """Powell on the coarsest level (robust to its plateaus), L-BFGS-B with finite
            differences on finer ones (smooth there, and far fewer evaluations). Returns the
            best point evaluated, not the optimiser's `x`: stopped by its budget inside a line
            search, Powell can return a trial point far worse than its start."""
            best = [start, float(np.mean(per_frame(start, level)))]

            def negative(p: np.ndarray) -> float:
                value = float(np.mean(per_frame(p, level)))
                if value > best[1]:
                    best[:] = [np.array(p, dtype=float), value]
                return -value

            if level == 0:
                optimize.minimize(negative, start, method="Powell", bounds=list(zip(-limits, limits)),
                                  options={"maxfev": evaluations, "xtol": 5e-2, "ftol": 1e-4})
            else:
                optimize.minimize(negative, start, method="L-BFGS-B", bounds=list(zip(-limits, limits)),
                                  options={"maxfun": evaluations, "eps": 0.1, "ftol": 1e-6, "gtol": 1e-5})
            return best[0], best[1]

        coarse = lambda p: float(np.mean(per_frame(p, 0)))  # noqa: E731
        # an already aligned prior (a second registration in the same request) needs no search
        starts = [params] if coarse(params) >= config.aligned_similarity else self._grid_search(coarse, k)
        budget = config.max_evaluations_per_level
        # several starts share the coarse level's budget: the grid's best point at zero rotation
        # can sit in a side basin (a rotation error moves distant bones the other way)
        candidates = [search(np.clip(start, -limits, limits), 0, budget[0] // len(starts)) for start in starts]
        params = max(candidates, key=lambda candidate: candidate[1])[0]
        log.debug("image registration: coarse starts %s", [(np.round(c[0], 2), round(c[1], 3)) for c in candidates])
        for level in range(1, len(config.resolutions_px)):
            params = search(params, level, budget[level])[0]
        after = per_frame(params, finest)
        gain = float(np.mean(after)) - float(np.mean(before))
        if float(np.mean(after)) < config.min_similarity or gain < config.min_gain:
            message = (f"the twin's DRR does not explain the frame well enough (gradient correlation "
                       f"{np.mean(before):.3f} -> {np.mean(after):.3f}; needs >= {config.min_similarity:g} "
                       f"and a gain >= {config.min_gain:g}); correction rejected")
            log.info("image registration: %s", message)
            return self._rejected(initial, before, before, evaluations, started, message)
        correction = self._candidate(params, axes, centre)
        translation_mm = float(np.linalg.norm(apply(correction, centre) - centre))
        cosine = float(np.clip((np.trace(correction[:3, :3]) - 1.0) / 2.0, -1.0, 1.0))
        log.info("image registration: gradient correlation %.3f -> %.3f, correction %.1f mm / %.1f deg "
                 "(%d DRRs, %.2f s)", np.mean(before), np.mean(after), translation_mm,
                 math.degrees(math.acos(cosine)), evaluations * len(images), time.perf_counter() - started)
        return ImageRegistrationResult(correction @ initial, correction, tuple(before), tuple(after), translation_mm,
                                       math.degrees(math.acos(cosine)), evaluations,
                                       time.perf_counter() - started, True)

    def _grid_search(self, score, k: int) -> list[np.ndarray]:
        """The `starts` best translations on a coarse grid (zero rotation): a capture range of
        +-steps x step mm, far beyond Powell's basin on a fine image. With three observable
        axes the grid is halved per axis (a cube of evaluations)."""
        config = self.config
        steps = config.search_steps if k <= 2 else max(1, config.search_steps // 2)
        step = config.search_step_mm * (1 if k <= 2 else 2) / config.translation_scale_mm
        offsets = np.arange(-steps, steps + 1) * step
        grid = np.stack(np.meshgrid(*([offsets] * k), indexing="ij"), axis=-1).reshape(-1, k)
        candidates = np.hstack([grid, np.zeros((len(grid), 3))])
        scores = np.array([score(candidate) for candidate in candidates])
        return [candidates[i] for i in np.argsort(-scores)[:max(1, config.starts)]]

    def _candidate(self, reduced: np.ndarray, axes: np.ndarray, centre: np.ndarray) -> np.ndarray:
        k = len(axes)
        full = np.concatenate([reduced[:k] @ axes, reduced[k:]])
        return rigid_correction(full, centre, self.config.translation_scale_mm, self.config.rotation_scale_deg)

    @staticmethod
    def _rejected(initial: np.ndarray, before, after, evaluations: int, started: float,
                  message: str) -> ImageRegistrationResult:
        return ImageRegistrationResult(initial.copy(), np.eye(4), tuple(before), tuple(after), 0.0, 0.0,
                                       evaluations, time.perf_counter() - started, False, message)
