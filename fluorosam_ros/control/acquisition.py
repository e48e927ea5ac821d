"""The AcquireView loop: segment -> localise -> plan -> move -> acquire -> re-segment -> refine.

Plain Python: the C-arm and the segmenter are ports (small protocols), so the same loop runs
over ROS in `planner_node` (action and service clients), in-process in `fluorosam
evaluate-control` (our renderer and the predictor), and in unit tests (analytic scenes).

Every target pose passes through `plan_view`/`recentre`, which only return poses that passed
`CArmGeometry.validate`; the loop never commands anything else.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

import numpy as np

from ..evaluation.metrics import dice
from ..geometry.carm import CArmState
from ..twin.patient import PatientError
from .collimation import check_coverage
from .anatomy import Target, UnknownStructure, resolve_target
from .config import PlannerConfig
from .image_registration import ImageRegistrar, ImageRegistrationResult
from .localisation import localise_fused, localise_image_only, localise_twin
from .registration import SINGLE_DIRECTION_DEG, silhouette_dice
from .plan import ViewPlan, mask_centring, plan_view
from .safety import PlanningInputError
from .structure import LocalisedStructure
from .twin_prior import TwinPrior
from .views import NamedView, parse_view, pivot_from_mask, propose_second_view
from .visual_hull import LocalisationError, PosedMask, reproject_points

log = logging.getLogger(__name__)

STAGES = ("segment", "localise", "plan", "move", "acquire", "refine")


@dataclass
class Frame:
    """An acquired image and the C-arm state it was taken at."""

    image: np.ndarray
    state: CArmState
    stamp: float = 0.0


class CArmPort(Protocol):
    def latest_frame(self) -> Frame | None:
        """The newest frame with its state, or None."""

    def acquire(self) -> Frame | None:
        """Take a frame at the current pose."""

    def move(self, target: CArmState, acquire: bool = True) -> Frame | None:
        """Move to `target` (pose and collimation); with `acquire`, return the new frame.
        Raise `AcquisitionError` when the C-arm refuses, fails or is unreachable."""


class SegmenterPort(Protocol):
    def segment(self, frame: Frame, target: Target, hint_xy: np.ndarray | None = None) -> np.ndarray | None:
        """The target's mask in `frame` (bool, the image's shape), or None when absent.
        `hint_xy`: where the twin expects the target, (col, row) px: a positive click."""


class AcquisitionError(RuntimeError):
    """A stage failed; `reason` is the AcquireView result's failure_reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AcquireRequest:
    structure: str
    view: str = ""                  # "" = keep the current beam direction
    margin_mm: float = 0.0          # <= 0: the config's collimation margin
    angle_deg: float = math.nan     # an angle given apart from the view name (NaN = none)

    def __post_init__(self) -> None:
        if not isinstance(self.structure, str) or not self.structure.strip():
            raise PlanningInputError("a structure name is required")
        if not math.isfinite(self.margin_mm):
            raise PlanningInputError("margin_mm must be finite")
        if self.view.strip():
            parse_view(self.view)  # an unknown view is refused before anything moves
        if not math.isnan(self.angle_deg) and not 0.0 <= self.angle_deg <= 90.0:
            raise PlanningInputError(f"the view's angle must be within [0, 90] deg, got {self.angle_deg}")


@dataclass
class AcquireOutcome:
    success: bool
    message: str
    failure_reason: str = ""
    final_state: CArmState | None = None
    structure: LocalisedStructure | None = None
    plan: ViewPlan | None = None
    final_mask: np.ndarray | None = None
    final_frame: Frame | None = None
    centring_error_px: float = math.nan
    centring_fraction: float = math.nan
    coverage: float = math.nan
    collimated_area_fraction: float = math.nan
    view_angle_error_deg: float = math.nan
    acquisitions: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.success:
            return f"failed ({self.failure_reason}): {self.message}"
        return (f"centring {100 * self.centring_fraction:.1f}% of the width ({self.centring_error_px:.1f} px), "
                f"coverage {100 * self.coverage:.1f}%, collimated area {100 * self.collimated_area_fraction:.0f}%, "
                f"view angle error {self.view_angle_error_deg:.1f} deg, {self.acquisitions} acquisition(s)")


def twin_view_frame(structure: LocalisedStructure, state: CArmState, closing_px: int = 2) -> np.ndarray:
    """The localised structure projected into `state`'s image (no collimation): the target mask
    that the collimated image can no longer show in full."""
    return reproject_points(structure.points_world, state.camera(), closing_px)


def keep_direction(state: CArmState) -> NamedView:
    """The view of a request that names none: the current beam direction."""
    return NamedView("current", state.geometry.principal_ray_world(state.pose), 0.0, False, "",
                     "the current beam direction", False)


class ViewAcquisition:
    """Runs AcquireView requests against a C-arm and a segmenter. Keeps, across requests, the
    twin's corrected registration (fused mode) so that later requests start from it."""

    def __init__(self, carm: CArmPort, segmenter: SegmenterPort, config: PlannerConfig | None = None,
                 prior: TwinPrior | None = None, image_registrar: ImageRegistrar | None = None) -> None:
        """`image_registrar`: one built for `prior`'s patient with this config's settings, to share
        between loops (its reduced CTs take a moment to build); by default built on first use."""
        self.carm = carm
        self.segmenter = segmenter
        self.config = config or PlannerConfig()
        self.prior = prior
        if self.config.localisation_mode in ("twin", "fused") and prior is None:
            raise PlanningInputError(f"localisation mode {self.config.localisation_mode!r} needs the twin prior")
        self._registrar = image_registrar

    @property
    def image_registrar(self) -> ImageRegistrar | None:
        """Registers the twin's CT to the frames (fused mode); built on first use."""
        if (self._registrar is None and self.prior is not None and self.config.image_registration.enabled
                and self.config.localisation_mode == "fused"):
            self._registrar = ImageRegistrar(self.prior.patient, self.config.image_registration)
        return self._registrar

    def resolve(self, structure: str) -> Target:
        if self.prior is not None:
            return resolve_target(structure, self.prior.patient.structure_names.values())
        return Target(structure, structure.replace("_", " "), (structure,))

    # ---- the loop ------------------------------------------------------------------------
    def run(self, request: AcquireRequest, feedback: Callable[[str, str], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> AcquireOutcome:
        loop = None
        try:
            loop = _Loop(self, request, feedback or (lambda stage, detail: None), cancelled or (lambda: False))
            return loop.execute()
        except AcquisitionError as error:
            log.warning("AcquireView %s failed (%s): %s", request.structure, error.reason, error)
            if loop is None:
                return _Loop.failed(str(error), error.reason)
            return loop.outcome(False, str(error), error.reason)
        except UnknownStructure as error:
            return _Loop.failed(str(error), "unknown_structure")
        except PatientError as error:  # a known structure outside the twin's CT
            return _Loop.failed(str(error), "not_in_twin")
        except (PlanningInputError, LocalisationError) as error:
            log.warning("AcquireView %s failed: %s", request.structure, error)
            reason = "invalid" if isinstance(error, PlanningInputError) else "not_localised"
            if loop is None:
                return _Loop.failed(str(error), reason)
            return loop.outcome(False, str(error), reason)


class _Loop:
    """One request's state (the frames and masks seen so far)."""

    def __init__(self, owner: ViewAcquisition, request: AcquireRequest, feedback, cancelled) -> None:
        self.owner, self.request, self.feedback, self.cancelled = owner, request, feedback, cancelled
        self.config = owner.config
        self.views: list[PosedMask] = []
        self.frames: list[Frame] = []      # every frame of this request, for image registration
        self.image_registration: ImageRegistrationResult | None = None
        self.registered_rays: list[np.ndarray] = []  # beams of the frames the registration used
        self.acquisitions = 0
        self.seconds: dict[str, float] = {}
        self.structure: LocalisedStructure | None = None
        self.plan: ViewPlan | None = None
        self.final: tuple[Frame, np.ndarray | None] | None = None
        self.measure: dict[str, float] = {}
        self.target = owner.resolve(request.structure)
        # whether the masks are consistent with the localisation (the registration accepted
        # them, or they are its only source): only then do they steer refinement and judging
        self.masks_trusted = False

    def stage(self, name: str, detail: str = "") -> None:
        if self.cancelled():
            raise AcquisitionError("canceled", f"canceled before {name}")
        self.feedback(name, detail)

    def timed(self, name: str, function, *args):
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    # ---- stages --------------------------------------------------------------------------
    def current_frame(self) -> Frame:
        frame = self.owner.carm.latest_frame()
        if frame is None:
            self.stage("acquire", "no frame yet: acquiring one")
            frame = self.timed("move", self.owner.carm.acquire)
            if frame is None:
                raise AcquisitionError("no_frame", "no image from the C-arm to start from")
            self.acquisitions += 1
        self.frames.append(frame)
        return frame

    def segment(self, frame: Frame) -> np.ndarray | None:
        hint = self.hint_for(frame)
        self.stage("segment", f"'{self.target.prompt}'" + (f" at ({hint[0]:.0f}, {hint[1]:.0f}) px" if hint is not None else ""))
        mask = self.timed("segment", self.owner.segmenter.segment, frame, self.target, hint)
        if mask is None:
            return None
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != frame.image.shape[:2]:
            raise AcquisitionError("segmentation_failed", f"the mask's shape {mask.shape} is not the image's "
                                                          f"{frame.image.shape[:2]}")
        if not mask.any():
            return None
        self.views.append(PosedMask.from_state(mask, frame.state))
        return mask

    def hint_for(self, frame: Frame) -> np.ndarray | None:
        """The twin's (or the latest localisation's) centroid projected into `frame`, when it
        falls inside the exposed field: the model is prompted with text plus this click, which
        lifts its masks far above text alone (FluoroSAM's text + point mode)."""
        prior = self.owner.prior
        if not self.config.twin_hint or prior is None:
            return None
        centroid = self.structure.centroid_world if self.structure is not None else \
            prior.localise(self.target.name).centroid_world
        camera = frame.state.camera()
        if camera.depth_mm(np.asarray(centroid)[None])[0] <= 0:
            return None
        col, row = camera.project(np.asarray(centroid)[None])[0]
        width, height = frame.state.config.sensor_width_px, frame.state.config.sensor_height_px
        if not (0 <= col < width and 0 <= row < height):
            return None
        if not frame.state.collimation.field_mask(width, height)[int(row), int(col)]:
            return None
        return np.array([col, row], dtype=float)

    def move(self, target: CArmState, stage: str = "move") -> Frame:
        self.stage(stage, f"alpha {target.pose.alpha_deg:.1f} deg, beta {target.pose.beta_deg:.1f} deg")
        frame = self.timed("move", self.owner.carm.move, target, True)
        if frame is None:
            raise AcquisitionError("no_frame", "the C-arm moved but no image arrived")
        self.acquisitions += 1
        self.frames.append(frame)
        return frame

    def localise(self, first: Frame, mask: np.ndarray | None) -> LocalisedStructure:
        mode, name = self.config.localisation_mode, self.request.structure
        self.stage("localise", mode)
        if mode == "fused":
            self.register_frames()
            if self.image_registered:
                return self.from_registered_twin()
        prior = self.owner.prior
        if mode == "twin" or (mode == "fused" and mask is None):
            # fused without a mask (the structure is outside this field): go by the twin, and
            # let the refinement step correct it from the next image
            return self.timed("localise", localise_twin, prior, name, 0.5 if mode == "twin" else 0.3)
        if mode == "fused":
            return self.from_masks()
        if mask is None:
            raise AcquisitionError("not_found", f"'{name}' is not in the current image (image-only "
                                               "localisation cannot search outside the field)")
        if len(self.views) < 2:
            self.second_view(first, mask)
        self.masks_trusted = True
        return self.timed("localise", localise_image_only, name, list(self.views), self.config.hull)

    def from_registered_twin(self) -> LocalisedStructure:
        """The structure from the twin registered to the images; the masks are only checked
        against it (they steer refinement and judging when they agree)."""
        prior, name = self.owner.prior, self.request.structure
        structure = self.timed("localise", localise_twin, prior, name, self.image_registration.similarity)
        dice = [silhouette_dice(prior, name, view) for view in self.views]
        self.masks_trusted = bool(dice) and min(dice) >= self.config.registration.min_aligned_dice
        if dice:
            log.info("AcquireView %s: the masks %s the image-registered twin (silhouette Dice %s)", name,
                     "agree with" if self.masks_trusted else "do not match", ", ".join(f"{d:.2f}" for d in dice))
        return structure

    def from_masks(self) -> LocalisedStructure:
        """The twin re-registered to the masks (silhouette alignment), when the images alone
        could not register it."""
        prior = self.owner.prior
        structure, result = self.timed("localise", localise_fused, prior, self.request.structure, list(self.views),
                                       self.config.registration)
        self.owner.prior = prior.with_registration(result.world_from_twin)
        self.masks_trusted = bool(result.improved)
        return structure

    @property
    def localisation_checked(self) -> bool:
        """Whether the localisation rests on the images: the masks themselves (image mode), the
        twin registered to the frames, or the twin aligned to masks it explains."""
        mode = self.config.localisation_mode
        return mode == "image" or (mode == "fused" and (self.image_registered or self.masks_trusted))

    @property
    def image_registered(self) -> bool:
        return self.image_registration is not None and self.image_registration.improved

    def register_frames(self) -> None:
        """Fused mode: align the twin's CT to this request's frames (intensity 2-D/3-D
        registration), before any mask is consulted; a rejected alignment changes nothing."""
        registrar = self.owner.image_registrar
        if registrar is None or not self.frames:
            return
        recent = self.frames[-self.config.image_registration.max_frames:]
        if self.image_registered and self.no_new_direction(recent):
            # the new frame looks along a direction already registered: it cannot show more
            # (the depth along that direction stays unobservable), so the registration stands
            return
        prior = self.owner.prior
        centre = prior.localise(self.target.name).centroid_world
        frames = [(frame.image, frame.state) for frame in recent]
        self.stage("localise", f"registering the twin to {len(frames)} frame(s)")
        try:
            result = self.timed("register", registrar.register, prior.world_from_twin, frames, centre)
        except PlanningInputError as error:  # a frame it cannot use: go on without it
            log.warning("image registration skipped: %s", error)
            return
        if result.improved:
            self.owner.prior = prior.with_registration(result.world_from_twin)
            self.image_registration = result
            self.registered_rays = [frame.state.camera().principal_ray_world for frame in recent]
        elif self.image_registration is None:
            self.image_registration = result

    def no_new_direction(self, frames: list[Frame]) -> bool:
        """True when every frame's beam is within `SINGLE_DIRECTION_DEG` (either sense) of a
        beam the accepted registration already used."""
        for frame in frames:
            ray = frame.state.camera().principal_ray_world
            folded = [math.degrees(math.acos(min(1.0, abs(float(np.dot(ray, seen)))))) for seen in self.registered_rays]
            if not folded or min(folded) > SINGLE_DIRECTION_DEG:
                return False
        return True

    def second_view(self, first: Frame, mask: np.ndarray) -> None:
        geometry = first.state.geometry
        pivot = pivot_from_mask(mask, first.state.camera(), geometry, first.state.pose)
        second = propose_second_view(first.state.pose, geometry, pivot, self.config.views.second_view_offset_deg)
        frame = self.move(CArmState(first.state.config, second.pose), "acquire")
        if self.segment(frame) is None:
            raise AcquisitionError("not_found", f"'{self.request.structure}' is not in the second view")

    def plan_for(self, structure: LocalisedStructure, current: CArmState) -> ViewPlan:
        self.stage("plan", f"view '{self.request.view or 'current'}'")
        config = self.config
        margin = self.request.margin_mm
        if margin <= 0 and not self.localisation_checked:
            # the twin's registration error is unknown: collimate wider rather than cut the target
            margin = max(config.collimation.margin_mm, config.collimation.unregistered_margin_mm)
        if margin > 0:
            config = replace(config, collimation=replace(config.collimation, margin_mm=margin))
        angle = None if math.isnan(self.request.angle_deg) else self.request.angle_deg
        view = self.request.view or keep_direction(current)
        plan = self.timed("plan", plan_view, structure, view, current, config, angle)
        if not plan.feasible:
            residual = ", ".join(f"{k} {v:.2f}" for k, v in plan.solution.residual.items())
            message = "; ".join(plan.reasons) + f" (residual: {residual})"
            if not self.only_too_large(plan):
                raise AcquisitionError("infeasible", message)
            # the right direction, centred, but the structure outgrows the field (a whole
            # spine): show as much as fits; the result reports the coverage shortfall
            self.feedback("plan", f"larger than the field, showing its centre: {message}")
            log.info("AcquireView %s: %s", self.target.name, message)
        return plan

    def only_too_large(self, plan: ViewPlan) -> bool:
        solution, views = plan.solution, self.config.views
        return (solution.angle_error_deg <= views.max_angle_error_deg
                and solution.centring_error_fraction <= views.max_centring_fraction)

    def measure_final(self, frame: Frame, mask: np.ndarray | None) -> None:
        state = frame.state
        collimation = state.collimation
        self.measure["collimated_area_fraction"] = collimation.area_fraction(
            state.config.sensor_width_px, state.config.sensor_height_px)
        self.measure["view_angle_error_deg"] = self.plan.solution.angle_error_deg
        # the collimated image cuts the target: coverage is judged on the localised structure's
        # projection (and edge contact on what the model still sees)
        target = twin_view_frame(self.structure, state)
        # centring from the mask only when the masks agree with the localisation; otherwise
        # (the model's mask is off, or absent) from where the localisation puts the target
        trusted = mask is not None and (self.config.localisation_mode == "image"
                                        or (self.masks_trusted and self.final_mask_agrees(mask, target, state)))
        self.measure["centring_source"] = "image" if trusted else "localisation"
        if trusted or target.any():
            offset, fraction = mask_centring(mask if trusted else target, state)
            self.measure["centring_error_px"] = float(np.hypot(*offset))
            self.measure["centring_fraction"] = fraction
        check = check_coverage(target, collimation, self.config.collimation,
                               collimated_mask=mask if mask is not None else target)
        self.measure["coverage"] = check.coverage
        self.measure["coverage_message"] = check.message

    def final_mask_agrees(self, mask: np.ndarray, target: np.ndarray, state: CArmState) -> bool:
        """Whether the last frame's mask, too, shows what the localisation puts there (Dice
        within the exposed field): earlier masks agreeing does not vouch for this one, and a
        mask that spills past the target would misjudge a well-centred view."""
        field = state.collimation.field_mask(state.config.sensor_width_px, state.config.sensor_height_px)
        agreement = dice(mask & field, target & field)
        if agreement < self.config.registration.min_aligned_dice:
            log.info("AcquireView %s: the last frame's mask does not match the localisation (Dice %.2f); "
                     "centring judged from the localisation", self.request.structure, agreement)
            return False
        return True

    def execute(self) -> AcquireOutcome:
        first = self.current_frame()
        mask = self.segment(first)
        if mask is None and self.config.localisation_mode == "image":
            raise AcquisitionError("not_found", f"'{self.request.structure}' is not in the current image")
        self.structure = self.localise(first, mask)
        self.plan = self.plan_for(self.structure, first.state)
        frame = self.move(self.plan.target_state)
        mask = self.segment(frame)
        if self.needs_refinement(frame, mask) and self.refine(frame):
            frame = self.move(self.plan.target_state, "refine")
            mask = self.segment(frame)
        self.final = (frame, mask)
        self.measure_final(frame, mask)
        if mask is None and self.config.localisation_mode == "image":
            return self.outcome(False, f"'{self.request.structure}' is not visible in the new image", "lost")
        return self.judge()

    def needs_refinement(self, frame: Frame, mask: np.ndarray | None) -> bool:
        mode = self.config.localisation_mode
        if mode == "twin":
            return False
        if mode == "fused" and not self.masks_trusted and (mask is not None or self.owner.image_registrar is not None):
            return True  # a new view of the target: try the registrations again with it
        if mask is None:
            return False
        _, fraction = mask_centring(mask, frame.state)
        return fraction > self.config.views.max_centring_fraction / 2

    def refine(self, frame: Frame) -> bool:
        """Re-localise with every view seen so far and re-plan from the current pose; True
        when that changes the target pose (otherwise there is nothing to move for)."""
        self.stage("refine", f"{len(self.views)} view(s)")
        mode = self.config.localisation_mode
        if mode == "fused":
            previous = self.image_registration
            self.register_frames()
            if self.image_registration is not previous and self.image_registered:
                self.structure = self.from_registered_twin()
            elif self.image_registered or not self.views:
                return False  # nothing new: the images agree with the registration already
            else:
                self.structure = self.from_masks()
                if not self.masks_trusted:
                    return False
        elif mode == "image" and len(self.views) >= 2:
            self.structure = self.timed("localise", localise_image_only, self.request.structure,
                                        list(self.views), self.config.hull)
        elif mode == "image":  # one view only: shift across the beam towards the mask
            return False
        before = self.plan.target_state.pose
        self.plan = self.plan_for(self.structure, frame.state)
        after = self.plan.target_state.pose
        moved_mm = float(np.linalg.norm(np.subtract(after.isocenter_mm, before.isocenter_mm)))
        turned_deg = abs(after.alpha_deg - before.alpha_deg) + abs(after.beta_deg - before.beta_deg)
        return moved_mm > 1.0 or turned_deg > 0.5

    def judge(self) -> AcquireOutcome:
        views = self.config.views
        m = self.measure
        problems = []
        if "centring_fraction" not in m:
            return self.outcome(False, f"'{self.target.prompt}' does not project into the new image", "lost")
        if m["centring_fraction"] > views.max_centring_fraction:
            problems.append(f"off-centre by {100 * m['centring_fraction']:.1f}% of the width")
        if m["coverage"] < self.config.collimation.min_coverage:
            problems.append(m.get("coverage_message") or f"coverage {100 * m['coverage']:.1f}%")
        if m["view_angle_error_deg"] > views.max_angle_error_deg:
            problems.append(f"view angle off by {m['view_angle_error_deg']:.1f} deg")
        if problems:
            return self.outcome(False, "; ".join(problems), "off_target")
        if m["centring_source"] == "image":
            return self.outcome(True, "shown and collimated")
        if self.image_registered:
            return self.outcome(True, "shown and collimated where the twin, registered to the images, puts it "
                                      "(the model's mask did not match the twin, so it was not used)")
        return self.outcome(True, "shown and collimated where the twin puts it (the model's mask "
                                  "did not match the twin, so it was not used)")

    @staticmethod
    def failed(message: str, reason: str) -> AcquireOutcome:
        return AcquireOutcome(False, message, reason)

    def outcome(self, success: bool, message: str, reason: str = "") -> AcquireOutcome:
        frame, mask = self.final if self.final else (None, None)
        m = self.measure
        return AcquireOutcome(
            success, message, reason, frame.state if frame else None, self.structure, self.plan, mask, frame,
            m.get("centring_error_px", math.nan), m.get("centring_fraction", math.nan),
            m.get("coverage", math.nan), m.get("collimated_area_fraction", math.nan),
            m.get("view_angle_error_deg", math.nan), self.acquisitions, dict(self.seconds))
