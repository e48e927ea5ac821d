"""Mobile C-arm kinematics with DeepDRR `MobileCArm` semantics (re-derived, numpy only).

Frames, all right-handed, millimetres:
  world   patient LPS.
  device  the C-arm's base; `world_from_device` places it in the world (DeepDRR's default is
          the identity; `CArmConfig.for_supine_patient()` gives the usual operating-room set-up).
  arm     rotates with the C and is centred on the isocenter:
          device_from_arm = [R_y(beta) R_x(alpha) | isocenter], so alpha (orbital) turns about
          the device x axis and beta (angular) about the device y axis, x first.
          In the arm frame the principal ray is +z; the source sits at
          (0, horizontal_offset, -source_to_isocenter_distance).
  camera  the X-ray camera, origin at the source, z towards the detector:
          camera_from_arm = R_z(gamma) R_z(90 deg) T(0, -horizontal_offset, source_to_isocenter),
          where the 90 deg turn makes "down" in the image point along device -x.
  index   detector pixels (col, row), pixel (r, c) covering [c, c+1) x [r, r+1):
          K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]], f = source_to_detector / pixel_size.

index_from_world = K [I | 0] camera_from_arm arm_from_device device_from_world
(then, with `mirror_columns`, u -> W - u: the image a person facing the patient expects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .camera import CameraProjection
from .collimation import Collimation
from .transforms import angle_between_deg, apply, invert_rigid, rigid, rotation_about_axis, unit


class PoseError(ValueError):
    """A C-arm pose that is malformed (NaN/inf) or outside the joint limits."""


def _rotation_x(angle_rad: float) -> np.ndarray:
    return rotation_about_axis([1.0, 0.0, 0.0], angle_rad)


def _rotation_y(angle_rad: float) -> np.ndarray:
    return rotation_about_axis([0.0, 1.0, 0.0], angle_rad)


def _rotation_z(angle_rad: float) -> np.ndarray:
    return rotation_about_axis([0.0, 0.0, 1.0], angle_rad)


def supine_world_from_device() -> np.ndarray:
    """Device frame for a supine patient: device x = patient inferior, y = patient left,
    z = patient anterior (in the LPS world).

    With it, alpha = beta = 0 is the usual C-arm "AP" set-up (source under the table, beam
    travelling posterior to anterior), alpha > 0 swings the detector to the patient's right
    (RAO) and beta > 0 tilts it towards the feet (CAU), as DeepDRR documents.
    """
    rotation = np.column_stack([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    return rigid(rotation)


@dataclass(frozen=True)
class CArmConfig:
    """Fixed geometry and limits of a mobile C-arm. Defaults: DeepDRR MobileCArm (Siemens Cios)."""

    source_to_detector_distance_mm: float = 1020.0
    source_to_isocenter_distance_mm: float = 530.0
    source_to_isocenter_horizontal_offset_mm: float = 0.0
    sensor_width_px: int = 1536
    sensor_height_px: int = 1536
    pixel_size_mm: float = 0.194
    min_alpha_deg: float = -40.0
    max_alpha_deg: float = 110.0
    min_beta_deg: float = -225.0
    max_beta_deg: float = 225.0
    gamma_deg: float = 0.0
    rotate_camera_left: bool = True
    # DeepDRR images are seen from the source. A person reads radiographs facing the patient,
    # which is the mirror image; True flips the columns (index_from_world included).
    mirror_columns: bool = False
    world_from_device: np.ndarray = field(default_factory=lambda: np.eye(4))
    # Isocenter travel, world mm (a real C-arm's table and base limit it).
    isocenter_min_mm: tuple[float, float, float] = (-2000.0, -2000.0, -2000.0)
    isocenter_max_mm: tuple[float, float, float] = (2000.0, 2000.0, 2000.0)
    # Velocity limits used by simulated (and planned) motion.
    max_angular_speed_deg_s: float = 30.0
    max_translation_speed_mm_s: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "world_from_device", np.asarray(self.world_from_device, dtype=float))
        problems = []
        if not self.source_to_detector_distance_mm > self.source_to_isocenter_distance_mm > 0:
            problems.append("need source_to_detector > source_to_isocenter > 0")
        if self.sensor_width_px < 1 or self.sensor_height_px < 1 or not self.pixel_size_mm > 0:
            problems.append("sensor size and pixel size must be positive")
        if not (self.min_alpha_deg <= self.max_alpha_deg and self.min_beta_deg <= self.max_beta_deg):
            problems.append("joint limits have min > max")
        if self.world_from_device.shape != (4, 4):
            problems.append("world_from_device must be 4x4")
        if problems:
            raise ValueError("invalid C-arm config: " + "; ".join(problems))

    @classmethod
    def for_supine_patient(cls, **overrides) -> "CArmConfig":
        return cls(world_from_device=supine_world_from_device(), **overrides)

    def with_image_size(self, width_px: int, height_px: int | None = None) -> "CArmConfig":
        """The same physical detector read out at another resolution (binning / resampling)."""
        height_px = width_px if height_px is None else height_px
        factor = self.sensor_width_px / width_px
        if not math.isclose(factor, self.sensor_height_px / height_px, rel_tol=1e-9):
            raise ValueError("resampling must keep square pixels (same factor on both axes)")
        return replace(self, sensor_width_px=int(width_px), sensor_height_px=int(height_px),
                       pixel_size_mm=self.pixel_size_mm * factor)

    @property
    def detector_size_mm(self) -> tuple[float, float]:
        return self.sensor_width_px * self.pixel_size_mm, self.sensor_height_px * self.pixel_size_mm

    @property
    def focal_length_px(self) -> float:
        return self.source_to_detector_distance_mm / self.pixel_size_mm

    def intrinsic(self) -> np.ndarray:
        f = self.focal_length_px
        return np.array([[f, 0.0, self.sensor_width_px / 2], [0.0, f, self.sensor_height_px / 2],
                         [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class CArmPose:
    """The joints: isocenter in the world (mm) and the orbital/angular rotations (deg)."""

    isocenter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    alpha_deg: float = 0.0
    beta_deg: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "isocenter_mm", tuple(float(v) for v in self.isocenter_mm))
        if len(self.isocenter_mm) != 3:
            raise PoseError("isocenter must have 3 coordinates")

    def as_array(self) -> np.ndarray:
        return np.array([*self.isocenter_mm, self.alpha_deg, self.beta_deg])

    def is_finite(self) -> bool:
        return bool(np.all(np.isfinite(self.as_array())))


@dataclass(frozen=True)
class LookAtSolution:
    pose: CArmPose
    clamped: bool
    requested_direction: np.ndarray
    achieved_direction: np.ndarray
    angle_error_deg: float
    message: str = ""


class CArmGeometry:
    """Forward and inverse geometry of one C-arm configuration."""

    def __init__(self, config: CArmConfig | None = None) -> None:
        self.config = config or CArmConfig()
        self._device_from_world = invert_rigid(self.config.world_from_device)

    # ---- limits --------------------------------------------------------------------------
    def limit_violations(self, pose: CArmPose) -> list[str]:
        """Human-readable reasons why `pose` cannot be commanded (empty when it can)."""
        c = self.config
        if not pose.is_finite():
            return [f"pose contains NaN or inf: isocenter={list(pose.isocenter_mm)}, "
                    f"alpha={pose.alpha_deg}, beta={pose.beta_deg}"]
        reasons = []
        if not c.min_alpha_deg <= pose.alpha_deg <= c.max_alpha_deg:
            reasons.append(f"alpha {pose.alpha_deg:.2f} deg outside [{c.min_alpha_deg}, {c.max_alpha_deg}]")
        if not c.min_beta_deg <= pose.beta_deg <= c.max_beta_deg:
            reasons.append(f"beta {pose.beta_deg:.2f} deg outside [{c.min_beta_deg}, {c.max_beta_deg}]")
        for axis, value, lo, hi in zip("xyz", pose.isocenter_mm, c.isocenter_min_mm, c.isocenter_max_mm):
            if not lo <= value <= hi:
                reasons.append(f"isocenter {axis}={value:.1f} mm outside [{lo}, {hi}]")
        return reasons

    def validate(self, pose: CArmPose) -> None:
        reasons = self.limit_violations(pose)
        if reasons:
            raise PoseError("; ".join(reasons))

    def clamp(self, pose: CArmPose) -> CArmPose:
        c = self.config
        iso = np.clip(np.nan_to_num(pose.isocenter_mm), c.isocenter_min_mm, c.isocenter_max_mm)
        return CArmPose(tuple(iso),
                        float(np.clip(np.nan_to_num(pose.alpha_deg), c.min_alpha_deg, c.max_alpha_deg)),
                        float(np.clip(np.nan_to_num(pose.beta_deg), c.min_beta_deg, c.max_beta_deg)))

    # ---- forward -------------------------------------------------------------------------
    def _arm_rotation(self, pose: CArmPose) -> np.ndarray:
        return _rotation_y(math.radians(pose.beta_deg)) @ _rotation_x(math.radians(pose.alpha_deg))

    def device_from_arm(self, pose: CArmPose) -> np.ndarray:
        isocenter_device = apply(self._device_from_world, pose.isocenter_mm)
        return rigid(self._arm_rotation(pose), isocenter_device)

    def camera_from_arm(self) -> np.ndarray:
        c = self.config
        camera_from_arm = rigid(translation=[0.0, -c.source_to_isocenter_horizontal_offset_mm,
                                             c.source_to_isocenter_distance_mm])
        if c.rotate_camera_left:
            camera_from_arm = rigid(_rotation_z(math.pi / 2)) @ camera_from_arm
        return rigid(_rotation_z(math.radians(c.gamma_deg))) @ camera_from_arm

    def camera_from_world(self, pose: CArmPose) -> np.ndarray:
        arm_from_device = invert_rigid(self.device_from_arm(pose))
        return self.camera_from_arm() @ arm_from_device @ self._device_from_world

    def world_from_camera(self, pose: CArmPose) -> np.ndarray:
        return invert_rigid(self.camera_from_world(pose))

    def index_from_world(self, pose: CArmPose) -> np.ndarray:
        index_from_world = self.config.intrinsic() @ self.camera_from_world(pose)[:3, :]
        if self.config.mirror_columns:
            mirror = np.array([[-1.0, 0.0, self.config.sensor_width_px], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            index_from_world = mirror @ index_from_world
        return index_from_world

    def camera(self, pose: CArmPose) -> CameraProjection:
        c = self.config
        return CameraProjection(self.index_from_world(pose), c.sensor_width_px, c.sensor_height_px,
                                c.source_to_detector_distance_mm)

    def source_world(self, pose: CArmPose) -> np.ndarray:
        return self.world_from_camera(pose)[:3, 3]

    def principal_ray_world(self, pose: CArmPose) -> np.ndarray:
        """Unit vector from the source towards the detector."""
        world_from_arm = self.config.world_from_device @ self.device_from_arm(pose)
        return world_from_arm[:3, 2].copy()

    def viewpoint_world(self, pose: CArmPose) -> np.ndarray:
        """The point on the principal ray at the isocenter's depth (= isocenter without offset)."""
        world_from_arm = self.config.world_from_device @ self.device_from_arm(pose)
        return apply(world_from_arm, [0.0, self.config.source_to_isocenter_horizontal_offset_mm, 0.0])

    # ---- inverse -------------------------------------------------------------------------
    def angles_for_direction(self, direction_world: Sequence[float]) -> tuple[float, float]:
        """(alpha, beta) in degrees whose principal ray points along `direction_world`
        (one of the two solutions; the other is (180 - alpha, beta +- 180))."""
        d = apply(self._device_from_world, unit(direction_world)) - apply(self._device_from_world, np.zeros(3))
        # principal ray in the device frame: (cos a sin b, -sin a, cos a cos b)
        alpha = -math.atan2(d[1], math.hypot(d[0], d[2]))
        # at alpha = +-90 deg (a lateral) beta only rolls the image: take 0 (head up) rather
        # than the angle of rounding noise
        beta = math.atan2(d[0], d[2]) if math.hypot(d[0], d[2]) > 1e-9 else 0.0
        return math.degrees(alpha), math.degrees(beta)

    def _angle_candidates(self, alpha: float, beta: float) -> list[tuple[float, float]]:
        candidates = []
        for a, b in ((alpha, beta), (180.0 - alpha, beta + 180.0)):
            a = (a + 180.0) % 360.0 - 180.0
            for turns in (-2, -1, 0, 1, 2):
                candidates.append((a, b + 360.0 * turns))
        return candidates

    def look_at(self, point_world: Sequence[float], direction_world: Sequence[float],
                current: CArmPose | None = None) -> LookAtSolution:
        """The pose whose principal ray passes through `point_world` along `direction_world`
        (source -> detector). Among equivalent solutions, the feasible one nearest to `current`;
        when none is feasible, the nearest clamped pose, flagged `clamped` with its angle error."""
        point = np.asarray(point_world, dtype=float)
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise PoseError(f"look-at point must be 3 finite numbers, got {point.tolist()}")
        requested = unit(direction_world)
        current = current or CArmPose()
        alpha, beta = self.angles_for_direction(requested)

        best: tuple[float, float, CArmPose, bool] | None = None
        for a, b in self._angle_candidates(alpha, beta):
            pose = self.pose_through_point(point, a, b)
            clamped_pose = self.clamp(pose)
            clamped = clamped_pose != pose
            error = angle_between_deg(self.principal_ray_world(clamped_pose), requested)
            travel = abs(a - current.alpha_deg) + abs(b - current.beta_deg)
            key = (round(error, 6), travel)
            if best is None or key < (round(best[0], 6), best[1]):
                best = (error, travel, clamped_pose, clamped)
        error, _, pose, clamped = best
        if clamped:
            pose = self.pose_through_point(point, pose.alpha_deg, pose.beta_deg)
            pose = self.clamp(pose)
        achieved = self.principal_ray_world(pose)
        message = ""
        if clamped:
            message = (f"requested view is outside the joint limits; nearest feasible pose is "
                       f"{error:.1f} deg away")
        return LookAtSolution(pose, clamped, requested, achieved, angle_between_deg(achieved, requested), message)

    def pose_through_point(self, point_world: np.ndarray, alpha: float, beta: float) -> CArmPose:
        """The pose with these angles whose principal ray passes through `point_world` at the
        isocenter's depth (limits not checked)."""
        offset_arm = np.array([0.0, self.config.source_to_isocenter_horizontal_offset_mm, 0.0])
        rotation_world = self.config.world_from_device[:3, :3] @ self._arm_rotation(
            CArmPose(alpha_deg=alpha, beta_deg=beta))
        isocenter = point_world - rotation_world @ offset_arm
        return CArmPose(tuple(isocenter), alpha, beta)


@dataclass(frozen=True)
class CArmState:
    """Everything needed to form an image: device configuration, pose and collimation."""

    config: CArmConfig = field(default_factory=CArmConfig)
    pose: CArmPose = field(default_factory=CArmPose)
    collimation: Collimation = field(default_factory=Collimation.open)

    @property
    def geometry(self) -> CArmGeometry:
        return CArmGeometry(self.config)

    def camera(self) -> CameraProjection:
        return self.geometry.camera(self.pose)

    def with_pose(self, pose: CArmPose) -> "CArmState":
        return replace(self, pose=pose)

    def with_collimation(self, collimation: Collimation) -> "CArmState":
        return replace(self, collimation=collimation)
