"""What the planner node calls per request: plan a view with its collimation, and the one
re-centring step after the new image has been segmented."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.carm import CArmPose, CArmState
from .collimation import CollimationPlan, collimate_structure
from .config import PlannerConfig
from .safety import PlanningInputError, binary_mask, checked_pose, finite_array
from .structure import LocalisedStructure
from .views import MoveResult, NamedView, ViewSolution, named_view, solve_view


@dataclass(frozen=True)
class ViewPlan:
    solution: ViewSolution
    collimation: CollimationPlan
    target_state: CArmState        # pose and collimation to command (pose validated)

    @property
    def feasible(self) -> bool:
        return self.solution.feasible

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.solution.reasons + ((self.collimation.message,) if self.collimation.message else ())


def plan_view(structure: LocalisedStructure, view: str | NamedView, current: CArmState,
              config: PlannerConfig | None = None, angle_deg: float | None = None) -> ViewPlan:
    """Pose (within limits) and collimation that show `structure` in `view` from `current`."""
    config = config or PlannerConfig()
    requested = view if isinstance(view, NamedView) else named_view(view, structure, config.views, angle_deg)
    solution = solve_view(structure, requested, current.geometry, current.pose, config.views)
    state = CArmState(current.config, solution.pose)
    collimation = collimate_structure(structure, state, config.collimation)
    return ViewPlan(solution, collimation, state.with_collimation(collimation.collimation))


def mask_centring(mask: np.ndarray, state: CArmState) -> tuple[np.ndarray, float]:
    """(offset of the mask's centroid from the image centre in px (cols, rows), as a fraction
    of the image width): the success criterion's centring measure."""
    mask = binary_mask("mask", mask, (state.config.sensor_height_px, state.config.sensor_width_px))
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise PlanningInputError("the mask is empty: the target is not in the image")
    width, height = state.config.sensor_width_px, state.config.sensor_height_px
    offset = np.array([cols.mean() + 0.5 - width / 2, rows.mean() + 0.5 - height / 2])
    return offset, float(np.hypot(*offset) / width)


def recentre(mask: np.ndarray, state: CArmState, target_world=None, tolerance_fraction: float = 0.02) -> MoveResult:
    """One refinement step: shift the isocenter across the beam so that the mask's centroid
    moves to the image centre. The px -> mm scale is taken at `target_world`'s depth (default:
    the isocenter's). Within `tolerance_fraction` of the width, the pose is returned unchanged."""
    offset_px, fraction = mask_centring(mask, state)
    geometry, pose = state.geometry, state.pose
    if fraction <= tolerance_fraction:
        return MoveResult(pose, pose, False, "already centred", {"centring_fraction": fraction})
    camera = state.camera()
    point = geometry.viewpoint_world(pose) if target_world is None else finite_array("target", target_world, (3,))
    depth = float(camera.depth_mm(point)[0])
    mm_per_px = depth / float(abs(camera.intrinsic[0, 0]))
    _, col_step, row_step = camera.detector_grid_world()
    shift = mm_per_px * (offset_px[0] * col_step / np.linalg.norm(col_step)
                         + offset_px[1] * row_step / np.linalg.norm(row_step))
    requested = CArmPose(tuple(np.asarray(pose.isocenter_mm) + shift), pose.alpha_deg, pose.beta_deg)
    violations = geometry.limit_violations(requested)
    final = geometry.clamp(requested) if violations else requested
    message = "; ".join(violations) if violations else ""
    return MoveResult(checked_pose(geometry, final), requested, bool(violations), message,
                      {"centring_fraction": fraction, "shift_mm": shift, "mm_per_px": mm_per_px,
                       "shift_norm_mm": float(np.linalg.norm(shift))})
