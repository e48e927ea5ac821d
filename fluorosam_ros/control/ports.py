"""In-process implementations of the AcquireView loop's ports (no ROS): a C-arm that renders
the digital twin, the FluoroSAM predictor as a segmenter, and ground-truth masks (the upper
bound of `fluorosam evaluate-control`). `planner_node` implements the same ports over ROS."""

from __future__ import annotations

import time

import numpy as np

from ..geometry.carm import CArmGeometry, CArmState, PoseError
from ..twin.detector import DetectorModel
from ..twin.renderer import Renderer
from ..geometry.collimation import Collimation
from .acquisition import AcquisitionError, Frame
from .anatomy import Target


class RenderedCArm:
    """A C-arm that moves instantly and renders the twin: the evaluation's simulated device.
    Like carm_sim, it refuses a target outside the joint limits (and changes nothing)."""

    def __init__(self, renderer: Renderer, detector: DetectorModel, state: CArmState,
                 rng: np.random.Generator | None = None) -> None:
        self.renderer = renderer
        self.detector = detector
        self.state = state
        self.rng = rng or np.random.default_rng(0)
        self.frame: Frame | None = None
        self.frames = 0
        self.moves = 0

    @property
    def geometry(self) -> CArmGeometry:
        return self.state.geometry

    def latest_frame(self) -> Frame | None:
        return self.frame

    def acquire(self) -> Frame:
        result = self.renderer.render(self.state, structures=None)
        intensity = self.detector.intensity(result.line_integral, result.exposed, self.rng)
        display = self.detector.display(intensity, result.exposed)
        self.frames += 1
        self.frame = Frame(display.astype(np.float32), self.state, time.monotonic())
        return self.frame

    def move(self, target: CArmState, acquire: bool = True) -> Frame | None:
        try:
            self.geometry.validate(target.pose)
        except PoseError as error:
            raise AcquisitionError("rejected", f"the C-arm refused the target: {error}") from error
        self.state = CArmState(self.state.config, target.pose, target.collimation)
        self.moves += 1
        return self.acquire() if acquire else None

    def truth_mask(self, target: Target, state: CArmState | None = None, collimated: bool = False) -> np.ndarray:
        """The target's ground-truth mask (the union of its members) at `state` (default: the
        current one), by default without the collimator (the whole target, as the coverage
        criterion needs)."""
        state = state or self.state
        if not collimated:
            state = state.with_collimation(Collimation.open())
        result = self.renderer.render(state, structures=list(target.members))
        return np.logical_or.reduce([result.mask(name) for name in target.members])


class PredictorSegmenter:
    """FluoroSAM (text prompt only) on a frame; None when the absent head fires or the mask is empty."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.calls = 0

    def segment(self, frame: Frame, target: Target, hint_xy: np.ndarray | None = None) -> np.ndarray | None:
        state = frame.state
        valid = None
        if state.collimation.enabled:
            valid = state.collimation.field_mask(frame.image.shape[1], frame.image.shape[0])
        self.predictor.set_image(frame.image, valid)
        points = labels = None
        if hint_xy is not None:
            points, labels = np.asarray(hint_xy, dtype=float).reshape(1, 2), np.ones(1, dtype=int)
        prediction = self.predictor.predict(text=target.prompt, points=points, labels=labels)
        self.calls += 1
        if prediction.absent:
            return None
        mask = np.asarray(prediction.best_mask, dtype=bool)
        if valid is not None:
            mask &= valid
        return mask if mask.any() else None


class TruthSegmenter:
    """Ground-truth masks from the renderer (what a perfect segmenter would return), restricted
    to the collimated field as a real image would be."""

    def __init__(self, carm: RenderedCArm) -> None:
        self.carm = carm
        self.calls = 0

    def segment(self, frame: Frame, target: Target, hint_xy: np.ndarray | None = None) -> np.ndarray | None:
        self.calls += 1
        mask = self.carm.truth_mask(target, frame.state, collimated=True)
        return mask if mask.any() else None
