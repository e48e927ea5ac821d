"""View planning: named views per anatomy, a pose solver within the joint limits, relative moves.

Directions are beam directions (source -> detector) in the patient LPS frame, as in
`fluorosam_ros.data.views`. With the source under the table, the C-arm's "AP" position sends
the beam posterior -> anterior. Angle conventions (DeepDRR / Cios, supine set-up):
  oblique_left  = LAO: the beam turns towards the patient's left (detector over the left chest)
  oblique_right = RAO
  cranial N     = CRA: the detector tilts N deg towards the head (beam gains a superior part)
  caudal N      = CAU
  inlet/outlet  = the pelvic projections: the inlet line is perpendicular to the pelvic brim,
                  i.e. along anterior-superior (the radiographic "AP, 40 deg caudad" line);
                  for a beam from under the table that is a cranial tilt. Outlet = the opposite.
The per-anatomy table (which views a structure has, and at which angle) comes from the data
engine's `standard_families()`, so the data engine and the planner share one list.

Every pose this module returns has passed `CArmGeometry.validate`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.views import ANTERIOR, LEFT, SUPERIOR, ViewFamily, standard_families, tilted
from ..geometry.camera import CameraProjection
from ..geometry.carm import CArmGeometry, CArmPose, LookAtSolution
from ..geometry.transforms import angle_between_deg, unit
from .safety import PlanningInputError, checked_pose, finite_array, finite_scalar
from .structure import LocalisedStructure

log = logging.getLogger(__name__)

VIEW_KINDS = ("ap", "pa", "lateral", "lateral_left", "lateral_right", "oblique_left", "oblique_right",
              "inlet", "outlet", "cranial", "caudal", "en_face", "end_on")
_ALIASES = {
    "ap": "ap", "anteroposterior": "ap", "frontal": "ap", "anterior posterior": "ap",
    "pa": "pa", "posteroanterior": "pa", "posterior anterior": "pa",
    "lateral": "lateral", "lat": "lateral", "side": "lateral", "true lateral": "lateral",
    "left lateral": "lateral_left", "lateral left": "lateral_left",
    "right lateral": "lateral_right", "lateral right": "lateral_right",
    "lao": "oblique_left", "oblique left": "oblique_left", "left oblique": "oblique_left",
    "left anterior oblique": "oblique_left",
    "rao": "oblique_right", "oblique right": "oblique_right", "right oblique": "oblique_right",
    "right anterior oblique": "oblique_right",
    "inlet": "inlet", "outlet": "outlet",
    "cranial": "cranial", "cra": "cranial", "cephalad": "cranial",
    "caudal": "caudal", "cau": "caudal", "caudad": "caudal",
    "en face": "en_face", "face on": "en_face", "end on": "end_on", "axial": "end_on",
}


@dataclass(frozen=True)
class ViewPlanningConfig:
    oblique_angle_deg: float = 30.0          # LAO/RAO when neither the request nor the anatomy says
    tilt_angle_deg: float = 20.0             # cranial/caudal default
    inlet_outlet_angle_deg: float = 40.0
    fit_margin: float = 1.2                  # the field at the target spans >= this x the structure
    depth_range_mm: tuple[float, float] = (-120.0, 300.0)  # target beyond the isocenter (mm, along the beam)
    max_angle_error_deg: float = 5.0         # a view further off than this is infeasible
    max_centring_fraction: float = 0.10      # target centroid offset / image width
    min_coverage: float = 0.95               # fraction of the structure's points on the detector
    elongation_for_long_axis: float = 1.5    # AP/lateral go across the long axis above this
    second_view_offset_deg: float = 90.0     # orthogonal views give the best-conditioned hull
    move_step_mm: float = 20.0               # relative moves without an amount
    rotate_step_deg: float = 10.0
    zoom_step: float = 1.25

    def __post_init__(self) -> None:
        for name in ("oblique_angle_deg", "tilt_angle_deg", "inlet_outlet_angle_deg", "second_view_offset_deg"):
            finite_scalar(name, getattr(self, name), minimum=0.0, maximum=90.0)
        finite_scalar("fit_margin", self.fit_margin, minimum=1.0)
        finite_scalar("max_angle_error_deg", self.max_angle_error_deg, minimum=0.0)
        finite_scalar("max_centring_fraction", self.max_centring_fraction, minimum=0.0)
        finite_scalar("min_coverage", self.min_coverage, minimum=0.0, maximum=1.0)
        lo, hi = (finite_scalar("depth_range_mm", v) for v in self.depth_range_mm)
        if lo > hi:
            raise PlanningInputError("depth_range_mm must be (min, max)")
        finite_scalar("move_step_mm", self.move_step_mm, minimum=0.0)
        finite_scalar("rotate_step_deg", self.rotate_step_deg, minimum=0.0)
        finite_scalar("zoom_step", self.zoom_step, minimum=1.0)


@dataclass(frozen=True)
class NamedView:
    name: str                    # a VIEW_KINDS entry
    direction_world: np.ndarray  # beam (source -> detector), LPS, unit
    angle_deg: float = 0.0       # the obliquity/tilt used, if any
    reversible: bool = False     # the opposite beam shows the same (mirrored) projection
    family: str = ""             # the data-engine family that defined it, if any
    description: str = ""
    # AP/lateral of elongated anatomy cross its long axis: the family says so when there is one
    # (spine, long bones); None = decide from the structure's elongation
    across_long_axis: bool | None = None


# ---- parsing and the per-anatomy table ----------------------------------------------------
def parse_view(text: str) -> tuple[str, float | None]:
    """"LAO 30" -> ("oblique_left", 30.0); "caudal tilt 15 deg" -> ("caudal", 15.0); "ap" -> ("ap", None)."""
    if not isinstance(text, str) or not text.strip():
        raise PlanningInputError("a view name is required")
    lowered = text.lower().replace("_", " ").replace("-", " ").replace("°", " ")
    numbers = re.findall(r"[-+]?\d+(?:\.\d+)?", lowered)
    words = re.sub(r"[-+]?\d+(?:\.\d+)?|\bdeg(?:rees?)?\b|\bview\b|\bprojection\b|\btilt(?:ed)?\b|\bangle\b",
                   " ", lowered)
    words = " ".join(words.split())
    kind = _ALIASES.get(words) or (words.replace(" ", "_") if words.replace(" ", "_") in VIEW_KINDS else None)
    if kind is None:
        raise PlanningInputError(f"unknown view {text!r}; known: {', '.join(VIEW_KINDS)}")
    angle = float(numbers[0]) if numbers else None
    if angle is not None:
        finite_scalar(f"angle of view {text!r}", angle, minimum=0.0, maximum=90.0)
    return kind, angle


def _family_kind(family: ViewFamily) -> str | None:
    """The view kind a data-engine family is an instance of ("femur_lateral_left" -> "lateral")."""
    parts = family.name.split("_")
    for part in parts[1:]:
        if part in ("ap", "lateral", "inlet", "outlet"):
            return part
        if part == "oblique":
            return "oblique_left" if float(np.dot(family.direction, LEFT)) > 0 else "oblique_right"
    return None


def anatomy_views(structure_name: str) -> dict[str, NamedView]:
    """The standard views the data engine defines for a structure, by kind (may be empty)."""
    table: dict[str, NamedView] = {}
    # the most specific family first: "humerus_ap_left" (one target) before "shoulder_ap_left"
    for family in sorted(standard_families(), key=lambda f: len(f.targets)):
        if structure_name not in family.targets:
            continue
        kind = _family_kind(family)
        if kind is None or kind in table:
            continue
        direction = np.asarray(family.direction, dtype=float)
        angle = angle_between_deg(direction, ANTERIOR) if kind not in ("lateral",) else 0.0
        if kind in ("inlet", "outlet"):
            # keep the family's angle, but the tilt sign follows this module's (radiographic)
            # definition; see the module docstring and the report on data.views
            direction = _kind_direction(kind, angle)
        table[kind] = NamedView(kind, direction, angle, family.reversible, family.name,
                                f"{kind} as defined by the {family.name} family",
                                family.perpendicular_to_long_axis)
    return table


def _kind_direction(kind: str, angle_deg: float) -> np.ndarray:
    if kind == "ap":
        return ANTERIOR.copy()
    if kind == "pa":
        return -ANTERIOR
    if kind in ("lateral", "lateral_left"):
        return LEFT.copy()
    if kind == "lateral_right":
        return -LEFT
    if kind == "oblique_left":
        return tilted(ANTERIOR, LEFT, angle_deg)
    if kind == "oblique_right":
        return tilted(ANTERIOR, -LEFT, angle_deg)
    if kind in ("cranial", "inlet"):
        return tilted(ANTERIOR, SUPERIOR, angle_deg)
    if kind in ("caudal", "outlet"):
        return tilted(ANTERIOR, -SUPERIOR, angle_deg)
    raise PlanningInputError(f"view {kind!r} needs a structure (it is defined by its principal axes)")


def named_view(view: str, structure: LocalisedStructure | None = None,
               config: ViewPlanningConfig | None = None, angle_deg: float | None = None) -> NamedView:
    """Resolve a requested view ("lateral", "LAO 30", "caudal 15") for a structure.

    Precedence: an angle in the request (`angle_deg` overrides one in the text), then the
    anatomy's own view (data-engine table), then the config default. AP/PA/lateral of an
    elongated structure (spine, long bones) are turned to cross its long axis; "en_face" looks
    along its shortest axis (largest area), "end_on" down its long axis."""
    config = config or ViewPlanningConfig()
    kind, angle = parse_view(view)
    if angle_deg is not None and not (isinstance(angle_deg, float) and math.isnan(angle_deg)):
        # an Intent carries the angle apart from the view name (NaN = not given)
        angle = finite_scalar(f"angle of view {view!r}", angle_deg, minimum=0.0, maximum=90.0)
    if kind in ("en_face", "end_on"):
        if structure is None:
            raise PlanningInputError(f"view {kind!r} is defined by a structure's axes; give the structure")
        axis = structure.box.axes_world[2 if kind == "en_face" else 0]
        # of the two senses, take the one closer to the AP beam (reachable from under the table)
        direction = axis if float(np.dot(axis, ANTERIOR)) >= 0 else -axis
        return NamedView(kind, unit(direction), 0.0, True, "", f"{kind} of {structure.name} (principal axes)")
    default_angle = {"oblique_left": config.oblique_angle_deg, "oblique_right": config.oblique_angle_deg,
                     "cranial": config.tilt_angle_deg, "caudal": config.tilt_angle_deg,
                     "inlet": config.inlet_outlet_angle_deg, "outlet": config.inlet_outlet_angle_deg}.get(kind, 0.0)
    anatomy = anatomy_views(structure.name).get(kind) if structure is not None else None
    if anatomy is not None and angle is None:
        result = anatomy
    else:
        use_angle = angle if angle is not None else (anatomy.angle_deg if anatomy else default_angle)
        reversible = kind == "lateral"
        result = NamedView(kind, _kind_direction(kind, use_angle), use_angle, reversible, "",
                           f"{kind} {use_angle:g} deg" if use_angle else kind)
    if structure is not None and kind in ("ap", "pa", "lateral", "lateral_left", "lateral_right"):
        result = _across_long_axis(result, structure, config)
    return result


def _across_long_axis(view: NamedView, structure: LocalisedStructure, config: ViewPlanningConfig) -> NamedView:
    if view.across_long_axis is False:
        return view
    half = np.sort(structure.box.half_extents_mm)[::-1]
    if half[0] < config.elongation_for_long_axis * max(half[1], 1e-6):
        return view
    long_axis = structure.box.axes_world[0]
    across = view.direction_world - np.dot(view.direction_world, long_axis) * long_axis
    if np.linalg.norm(across) < 0.3:  # the view looks nearly down the long axis: keep it as asked
        return view
    return NamedView(view.name, unit(across), view.angle_deg, view.reversible, view.family,
                     view.description + ", across the long axis", True)


# ---- the pose solver ----------------------------------------------------------------------
@dataclass(frozen=True)
class ViewSolution:
    view: NamedView
    pose: CArmPose                 # validated: within the joint limits
    feasible: bool                 # angle, centring and coverage all within the config's tolerances
    clamped: bool                  # a joint or the isocenter travel limited the pose
    requested_direction: np.ndarray
    achieved_direction: np.ndarray
    angle_error_deg: float
    target_world: np.ndarray       # the point put on the central ray
    depth_mm: float                # target beyond the isocenter, along the beam
    magnification: float           # at the target
    centring_error_mm: float       # target's distance from the central ray
    centring_error_px: float       # its projection's distance from the image centre
    centring_error_fraction: float  # ... as a fraction of the image width
    coverage: float                # fraction of the structure's points projecting onto the detector
    field_width_mm: float          # width of the image at the target's depth
    reasons: tuple[str, ...] = ()  # why it is infeasible / what was clamped

    @property
    def residual(self) -> dict:
        return {"angle_error_deg": self.angle_error_deg, "centring_error_mm": self.centring_error_mm,
                "coverage": self.coverage}


def _image_extent(camera: CameraProjection, points: np.ndarray, pad_px: float) -> np.ndarray:
    """Largest |offset| of the projected points from the image centre, per axis (cols, rows)."""
    uv = camera.project(points)
    centre = np.array([camera.sensor_width / 2, camera.sensor_height / 2])
    return np.abs(uv - centre).max(axis=0) + pad_px


def _evaluate(geometry: CArmGeometry, pose: CArmPose, structure: LocalisedStructure,
              target: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """(centring mm, centring px, coverage, magnification, depth mm, field width mm)."""
    camera = geometry.camera(pose)
    config = geometry.config
    source = camera.source_world
    ray = camera.principal_ray_world
    offset = target - source
    centring_mm = float(np.linalg.norm(offset - np.dot(offset, ray) * ray))
    uv = camera.project(target)[0]
    centring_px = float(np.hypot(uv[0] - config.sensor_width_px / 2, uv[1] - config.sensor_height_px / 2))
    points_uv = camera.project(structure.points_world)
    in_front = camera.depth_mm(structure.points_world) > 0
    on_detector = in_front & (points_uv[:, 0] >= 0) & (points_uv[:, 0] <= config.sensor_width_px) \
        & (points_uv[:, 1] >= 0) & (points_uv[:, 1] <= config.sensor_height_px)
    depth_from_source = float(camera.depth_mm(target)[0])
    magnification = config.source_to_detector_distance_mm / depth_from_source
    depth = depth_from_source - config.source_to_isocenter_distance_mm
    field_width = config.detector_size_mm[0] / magnification
    return centring_mm, centring_px, float(on_detector.mean()), magnification, depth, field_width


UPRIGHT_TOLERANCE_DEG = 2.0


def _upright(geometry: CArmGeometry, solution: LookAtSolution, point: np.ndarray,
             config: ViewPlanningConfig) -> LookAtSolution:
    """Near a lateral (alpha ~ +-90 deg) the exact beam can need beta far from 0, which rolls
    the image by up to 90 deg for the last degree of direction: take the upright lateral
    (beta = 0) when it is within UPRIGHT_TOLERANCE_DEG (and the view tolerance) of the request."""
    pose = solution.pose
    if abs(abs(pose.alpha_deg) - 90.0) > 10.0 or abs(pose.beta_deg) < 1.0:
        return solution
    alternative = geometry.pose_through_point(point, math.copysign(90.0, pose.alpha_deg), 0.0)
    if geometry.limit_violations(alternative):
        return solution
    achieved = geometry.principal_ray_world(alternative)
    error = angle_between_deg(achieved, solution.requested_direction)
    if error > min(UPRIGHT_TOLERANCE_DEG, config.max_angle_error_deg):
        return solution
    return LookAtSolution(alternative, False, solution.requested_direction, achieved, float(error),
                          "upright lateral")


def solve_view(structure: LocalisedStructure, view: NamedView | str, geometry: CArmGeometry,
               current: CArmPose | None = None, config: ViewPlanningConfig | None = None) -> ViewSolution:
    """The pose that shows `structure` in `view`: its centroid on the central ray, its whole
    extent on the detector with `fit_margin` (by choosing how far along the beam the isocenter
    sits, within `depth_range_mm`), inside the joint limits. When the limits prevent the view,
    the nearest feasible pose is returned with `feasible=False`, `clamped=True` and the residual."""
    config = config or ViewPlanningConfig()
    if isinstance(view, str):
        view = named_view(view, structure, config)
    target = finite_array("target centroid", structure.centroid_world, (3,))
    current = current or CArmPose()
    if not current.is_finite():
        raise PlanningInputError("the current pose contains NaN/inf")
    directions = [unit(view.direction_world)]
    if view.reversible:
        directions.append(-directions[0])
    c = geometry.config
    detector_half_mm = min(c.detector_size_mm) / 2
    depth_lo, depth_hi = config.depth_range_mm
    pad_mm = structure.point_spacing_mm / 2

    best = None
    for direction in directions:
        # extent across the beam -> the depth at which the field holds it with the margin
        offsets = structure.points_world - target
        across = offsets - np.outer(offsets @ direction, direction)
        radius_mm = float(np.linalg.norm(across, axis=1).max()) + pad_mm
        depth = c.source_to_detector_distance_mm * config.fit_margin * radius_mm / detector_half_mm \
            - c.source_to_isocenter_distance_mm
        depth = float(np.clip(depth, depth_lo, depth_hi))
        for _ in range(3):  # refine with the projected extent (the radius bound is conservative)
            solution = _upright(geometry, geometry.look_at(target - depth * direction, direction, current),
                                target - depth * direction, config)
            camera = geometry.camera(solution.pose)
            px_per_mm = c.focal_length_px / max(float(camera.depth_mm(target)[0]), 1e-6)
            extent_px = _image_extent(camera, structure.points_world, pad_mm * px_per_mm)
            ratio = float(np.max(extent_px / (np.array([c.sensor_width_px, c.sensor_height_px]) / 2)))
            wanted = (c.source_to_isocenter_distance_mm + depth) * ratio * config.fit_margin \
                - c.source_to_isocenter_distance_mm
            new_depth = float(np.clip(wanted, depth_lo, depth_hi))
            if abs(new_depth - depth) < 1.0:
                break
            depth = new_depth
        solution = _upright(geometry, geometry.look_at(target - depth * direction, direction, current),
                            target - depth * direction, config)
        pose = solution.pose
        centring_mm, centring_px, coverage, magnification, achieved_depth, field_width = \
            _evaluate(geometry, pose, structure, target)
        travel = abs(pose.alpha_deg - current.alpha_deg) + abs(pose.beta_deg - current.beta_deg)
        key = (round(solution.angle_error_deg, 3), -round(coverage, 3), round(centring_mm, 1), travel)
        if best is None or key < best[0]:
            best = (key, direction, solution, (centring_mm, centring_px, coverage, magnification,
                                               achieved_depth, field_width))
    _, direction, solution, (centring_mm, centring_px, coverage, magnification, depth, field_width) = best
    pose = checked_pose(geometry, solution.pose)
    fraction = centring_px / c.sensor_width_px
    reasons = []
    clamped = bool(solution.clamped)
    if solution.angle_error_deg > config.max_angle_error_deg:
        reasons.append(f"view {view.name} is {solution.angle_error_deg:.1f} deg beyond the joint limits "
                       f"(alpha [{c.min_alpha_deg:g}, {c.max_alpha_deg:g}], beta [{c.min_beta_deg:g}, "
                       f"{c.max_beta_deg:g}] deg); nearest pose returned")
    elif solution.clamped:
        reasons.append(f"joint or isocenter limits clamped the pose (angle error {solution.angle_error_deg:.1f} deg)")
    if fraction > config.max_centring_fraction:
        reasons.append(f"target is {centring_mm:.1f} mm off the central ray ({100 * fraction:.1f}% of the "
                       "image width): isocenter travel limit")
    if coverage < config.min_coverage:
        reasons.append(f"only {100 * coverage:.1f}% of the structure fits on the detector at the "
                       f"largest allowed depth ({depth:.0f} mm)")
    feasible = (solution.angle_error_deg <= config.max_angle_error_deg
                and fraction <= config.max_centring_fraction and coverage >= config.min_coverage)
    if not feasible:
        log.info("view %s of %s infeasible: %s", view.name, structure.name, "; ".join(reasons))
    return ViewSolution(view, pose, feasible, clamped, direction, solution.achieved_direction,
                        float(solution.angle_error_deg), target.copy(), float(depth), float(magnification),
                        centring_mm, centring_px, float(fraction), coverage, float(field_width), tuple(reasons))


# ---- relative moves -----------------------------------------------------------------------
@dataclass(frozen=True)
class MoveResult:
    pose: CArmPose                 # validated target pose
    requested_pose: CArmPose       # before clamping (may be outside the limits)
    clamped: bool
    message: str = ""
    details: dict = field(default_factory=dict)


_PATIENT_DIRECTIONS = {
    "left": LEFT, "right": -LEFT, "anterior": ANTERIOR, "posterior": -ANTERIOR,
    "superior": SUPERIOR, "inferior": -SUPERIOR, "cranial": SUPERIOR, "caudal": -SUPERIOR,
    "head": SUPERIOR, "feet": -SUPERIOR, "foot": -SUPERIOR, "cephalad": SUPERIOR, "caudad": -SUPERIOR,
}


def move_direction_world(direction: str | Sequence[float], camera: CameraProjection | None = None) -> np.ndarray:
    """A unit world vector for a move. Words: patient sides ("left", "superior", "head", ...),
    image directions ("up", "down", "image left", "image right": as the image is displayed), or
    along the beam ("in": the isocenter moves towards the detector, so the source approaches the
    anatomy; "out"). The last two groups need `camera`. "left"/"right" alone are the patient's
    sides. A vector is used as is."""
    if not isinstance(direction, str):
        return unit(finite_array("move direction", direction, (3,)))
    key = " ".join(direction.lower().replace("_", " ").split())
    if key in _PATIENT_DIRECTIONS:
        return _PATIENT_DIRECTIONS[key].copy()
    if key in ("in", "out"):
        # along the beam: "in" brings the source closer to the anatomy (more magnification)
        if camera is None:
            raise PlanningInputError(f"move {direction!r} is along the beam: the camera is needed")
        return (1.0 if key == "in" else -1.0) * camera.principal_ray_world
    image_words = {"up": (0.0, -1.0), "down": (0.0, 1.0), "image up": (0.0, -1.0), "image down": (0.0, 1.0),
                   "image left": (-1.0, 0.0), "image right": (1.0, 0.0)}
    if key in image_words:
        if camera is None:
            raise PlanningInputError(f"move {direction!r} is relative to the image: the camera is needed")
        _, col_step, row_step = camera.detector_grid_world()
        dc, dr = image_words[key]
        # moving the isocenter towards what lies at the image's top edge brings it to the centre
        return unit(dc * unit(col_step) + dr * unit(row_step))
    raise PlanningInputError(f"unknown move direction {direction!r}")


def _finish(geometry: CArmGeometry, requested: CArmPose, what: str, details: dict) -> MoveResult:
    clamped_pose = geometry.clamp(requested)
    clamped = geometry.limit_violations(requested) != []
    message = ""
    if clamped:
        message = f"{what}: limited by {'; '.join(geometry.limit_violations(requested))}"
        log.info(message)
    return MoveResult(checked_pose(geometry, clamped_pose), requested, clamped, message, details)


def _check_pose(pose: CArmPose) -> None:
    if not pose.is_finite():
        raise PlanningInputError("the current pose contains NaN/inf")


def move(pose: CArmPose, geometry: CArmGeometry, direction: str | Sequence[float], amount_mm: float) -> MoveResult:
    """Translate the isocenter by `amount_mm` along `direction` (angles unchanged)."""
    _check_pose(pose)
    amount = finite_scalar("move amount (mm)", amount_mm)
    vector = move_direction_world(direction, geometry.camera(pose))
    iso = np.asarray(pose.isocenter_mm) + amount * vector
    return _finish(geometry, CArmPose(tuple(iso), pose.alpha_deg, pose.beta_deg), f"move {direction}",
                   {"translation_mm": amount * vector})


def _joint_sign(geometry: CArmGeometry, joint: str, towards: np.ndarray) -> float:
    """+1 if increasing `joint` turns the beam towards `towards` (checked at the home pose, so
    the naming does not depend on the device's mounting), else -1."""
    home = CArmPose()
    step = CArmPose(alpha_deg=1.0) if joint == "alpha" else CArmPose(beta_deg=1.0)
    change = float(np.dot(geometry.principal_ray_world(step) - geometry.principal_ray_world(home), towards))
    return 1.0 if change >= 0 else -1.0


def _turn(pose: CArmPose, geometry: CArmGeometry, joint: str, delta_deg: float,
          pivot_world: Sequence[float] | None, what: str) -> MoveResult:
    _check_pose(pose)
    ray = geometry.principal_ray_world(pose)
    viewpoint = geometry.viewpoint_world(pose)
    pivot = viewpoint if pivot_world is None else finite_array("pivot", pivot_world, (3,))
    depth = float(np.dot(pivot - viewpoint, ray))  # keep the pivot at the same depth along the beam
    alpha = pose.alpha_deg + (delta_deg if joint == "alpha" else 0.0)
    beta = pose.beta_deg + (delta_deg if joint == "beta" else 0.0)
    wanted_ray = geometry.principal_ray_world(CArmPose(pose.isocenter_mm, alpha, beta))
    requested = geometry.pose_through_point(pivot - depth * wanted_ray, alpha, beta)
    details = {"delta_deg": delta_deg, "pivot_world": pivot}
    violations = geometry.limit_violations(requested)
    if not violations:
        return MoveResult(checked_pose(geometry, requested), requested, False, "", details)
    # clamp the joints first, then re-centre on the pivot, then respect the isocenter travel
    angles = geometry.clamp(CArmPose(pose.isocenter_mm, alpha, beta))
    centred = geometry.pose_through_point(pivot - depth * geometry.principal_ray_world(angles),
                                          angles.alpha_deg, angles.beta_deg)
    message = f"{what}: limited by {'; '.join(violations)}"
    log.info(message)
    return MoveResult(checked_pose(geometry, geometry.clamp(centred)), requested, True, message, details)


def rotate(pose: CArmPose, geometry: CArmGeometry, direction: str, amount_deg: float,
           pivot_world: Sequence[float] | None = None) -> MoveResult:
    """Orbital rotation (alpha) towards the patient's "left" (LAO) or "right" (RAO), about
    `pivot_world` (default: the isocenter), which stays on the central ray."""
    amount = finite_scalar("rotation (deg)", amount_deg, minimum=0.0, maximum=360.0)
    key = direction.lower().strip()
    towards = {"left": LEFT, "lao": LEFT, "right": -LEFT, "rao": -LEFT}.get(key)
    if towards is None:
        raise PlanningInputError(f"rotate direction must be left/right/lao/rao, got {direction!r}")
    delta = amount * _joint_sign(geometry, "alpha", towards)
    return _turn(pose, geometry, "alpha", delta, pivot_world, f"rotate {direction} {amount:g} deg")


def tilt(pose: CArmPose, geometry: CArmGeometry, direction: str, amount_deg: float,
         pivot_world: Sequence[float] | None = None) -> MoveResult:
    """Angular tilt (beta) "cranial" (detector towards the head) or "caudal"."""
    amount = finite_scalar("tilt (deg)", amount_deg, minimum=0.0, maximum=360.0)
    key = direction.lower().strip()
    towards = {"cranial": SUPERIOR, "head": SUPERIOR, "cra": SUPERIOR, "cephalad": SUPERIOR, "up": SUPERIOR,
               "caudal": -SUPERIOR, "feet": -SUPERIOR, "cau": -SUPERIOR, "caudad": -SUPERIOR,
               "down": -SUPERIOR}.get(key)
    if towards is None:
        raise PlanningInputError(f"tilt direction must be cranial/caudal, got {direction!r}")
    delta = amount * _joint_sign(geometry, "beta", towards)
    return _turn(pose, geometry, "beta", delta, pivot_world, f"tilt {direction} {amount:g} deg")


def zoom(pose: CArmPose, geometry: CArmGeometry, factor: float, target_world: Sequence[float] | None = None,
         config: ViewPlanningConfig | None = None) -> MoveResult:
    """Geometric zoom: scale the magnification at `target_world` (default: the isocenter) by
    `factor` (> 1 zooms in) by moving the C-arm along its beam, within `depth_range_mm`."""
    _check_pose(pose)
    config = config or ViewPlanningConfig()
    factor = finite_scalar("zoom factor", factor, minimum=1e-3)
    c = geometry.config
    ray = geometry.principal_ray_world(pose)
    viewpoint = geometry.viewpoint_world(pose)
    target = viewpoint if target_world is None else finite_array("zoom target", target_world, (3,))
    # re-centre on the target's projection onto the ray, so zooming never shifts the picture
    depth = float(np.dot(target - viewpoint, ray))
    on_ray = viewpoint + depth * ray
    magnification = c.source_to_detector_distance_mm / (c.source_to_isocenter_distance_mm + depth)
    wanted_depth = c.source_to_detector_distance_mm / (magnification * factor) - c.source_to_isocenter_distance_mm
    new_depth = float(np.clip(wanted_depth, *config.depth_range_mm))
    pose_depth_ok = geometry.pose_through_point(on_ray - new_depth * ray, pose.alpha_deg, pose.beta_deg)
    requested = geometry.pose_through_point(on_ray - wanted_depth * ray, pose.alpha_deg, pose.beta_deg)
    achieved = (c.source_to_isocenter_distance_mm + depth) / (c.source_to_isocenter_distance_mm + new_depth)
    result = _finish(geometry, pose_depth_ok, f"zoom x{factor:g}", {"achieved_factor": achieved,
                                                                     "depth_mm": new_depth})
    if new_depth != wanted_depth:
        message = (f"zoom x{factor:g}: limited to x{achieved:.2f} by the depth range "
                   f"{config.depth_range_mm} mm")
        return MoveResult(result.pose, requested, True, "; ".join(m for m in (message, result.message) if m),
                          result.details)
    return result


def relative_move(pose: CArmPose, geometry: CArmGeometry, action: str, direction: str | None = None,
                  amount: float | None = None, pivot_world: Sequence[float] | None = None,
                  config: ViewPlanningConfig | None = None) -> MoveResult:
    """One entry point for the language intents (`language.intents`: move/rotate/tilt/zoom with
    their direction words); `amount` in mm, deg or a zoom factor, None or NaN = the config's step;
    zoom direction "in"/"out"."""
    config = config or ViewPlanningConfig()
    action = action.lower().strip()
    if amount is not None and isinstance(amount, float) and math.isnan(amount):
        amount = None  # an Intent's "not given"
    if action == "move":
        return move(pose, geometry, direction or "", config.move_step_mm if amount is None else amount)
    if action == "rotate":
        return rotate(pose, geometry, direction or "", config.rotate_step_deg if amount is None else amount,
                      pivot_world)
    if action == "tilt":
        return tilt(pose, geometry, direction or "", config.rotate_step_deg if amount is None else amount,
                    pivot_world)
    if action == "zoom":
        factor = config.zoom_step if amount is None else finite_scalar("zoom factor", amount, minimum=1e-3)
        if (direction or "in").lower().strip() == "out":
            factor = 1.0 / factor
        elif (direction or "in").lower().strip() != "in":
            raise PlanningInputError(f"zoom direction must be in/out, got {direction!r}")
        return zoom(pose, geometry, factor, pivot_world, config)
    raise PlanningInputError(f"unknown relative move {action!r}; use move/rotate/tilt/zoom")


# ---- a second view for localisation -------------------------------------------------------
@dataclass(frozen=True)
class SecondView:
    pose: CArmPose
    separation_deg: float          # between the two viewing lines
    pivot_world: np.ndarray        # the point kept on the central ray
    clamped: bool
    message: str = ""


def propose_second_view(first_pose: CArmPose, geometry: CArmGeometry, pivot_world: Sequence[float] | None = None,
                        offset_deg: float = 90.0, min_separation_deg: float = 20.0) -> SecondView:
    """A pose `offset_deg` away from `first_pose` (orbital or angular, whichever the limits
    allow best) that keeps `pivot_world` on the central ray. Give as pivot the point where the
    single mask's centroid ray crosses the isocenter depth (`pivot_from_mask`)."""
    _check_pose(first_pose)
    offset = finite_scalar("offset_deg", offset_deg, minimum=1.0, maximum=90.0)
    first_ray = geometry.principal_ray_world(first_pose)
    viewpoint = geometry.viewpoint_world(first_pose)
    pivot = viewpoint if pivot_world is None else finite_array("pivot", pivot_world, (3,))
    depth = float(np.dot(pivot - viewpoint, first_ray))
    candidates = []
    for joint, sign in (("alpha", 1), ("alpha", -1), ("beta", 1), ("beta", -1)):
        alpha = first_pose.alpha_deg + (sign * offset if joint == "alpha" else 0.0)
        beta = first_pose.beta_deg + (sign * offset if joint == "beta" else 0.0)
        angles = geometry.clamp(CArmPose(first_pose.isocenter_mm, alpha, beta))
        ray = geometry.principal_ray_world(angles)
        pose = geometry.pose_through_point(pivot - depth * ray, angles.alpha_deg, angles.beta_deg)
        clamped = (angles.alpha_deg, angles.beta_deg) != (alpha, beta)
        if geometry.limit_violations(pose):
            pose, clamped = geometry.clamp(pose), True
        separation = angle_between_deg(first_ray, ray)
        separation = min(separation, 180.0 - separation)
        # prefer the requested separation, then orbital moves (they keep the image's up = head)
        candidates.append((abs(separation - offset), joint != "alpha", pose, separation, clamped))
    candidates.sort(key=lambda c: (round(c[0], 3), c[1]))
    _, _, pose, separation, clamped = candidates[0]
    message = ""
    if separation < min_separation_deg:
        message = (f"the joint limits allow only {separation:.1f} deg between the views "
                   f"(< {min_separation_deg:g}); depth will be poorly resolved")
    elif clamped:
        message = f"limits reduced the separation to {separation:.1f} deg"
    return SecondView(checked_pose(geometry, pose), float(separation), pivot, clamped, message)


def pivot_from_mask(mask: np.ndarray, camera: CameraProjection, geometry: CArmGeometry, pose: CArmPose) -> np.ndarray:
    """Where the ray through a single mask's centroid crosses the isocenter's depth: the best
    guess of the structure's position from one view."""
    from .visual_hull import PosedMask  # local: visual_hull imports nothing from here

    posed = PosedMask(mask, camera)
    source, direction = posed.ray_through(posed.centroid_px())
    viewpoint = geometry.viewpoint_world(pose)
    ray = geometry.principal_ray_world(pose)
    # the point on the mask ray at the same depth (along the principal ray) as the isocenter
    t = float(np.dot(viewpoint - source, ray) / np.dot(direction, ray))
    return source + t * direction
