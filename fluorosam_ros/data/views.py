"""C-arm views for the data engine: standard views derived from the anatomy present, and random ones.

Directions are beam directions (source -> detector) in the patient LPS frame. With the C-arm's
source under the table, the usual "AP" position sends the beam posterior -> anterior.
Every pose comes from `CArmGeometry.look_at`, so it is inside the joint limits; a view that the
limits would distort is re-drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..geometry.carm import CArmConfig, CArmGeometry, CArmPose
from ..geometry.transforms import angle_between_deg, rotation_about_axis, unit
from .anatomy import PatientAnatomy, StructureStats

ANTERIOR = np.array([0.0, -1.0, 0.0])
LEFT = np.array([1.0, 0.0, 0.0])
SUPERIOR = np.array([0.0, 0.0, 1.0])

VERTEBRAE = {
    "cervical": [f"vertebrae_C{i}" for i in range(1, 8)],
    "thoracic": [f"vertebrae_T{i}" for i in range(1, 13)],
    "lumbar": [f"vertebrae_L{i}" for i in range(1, 6)],
}
LUNGS = ["lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
         "lung_middle_lobe_right", "lung_lower_lobe_right"]


def tilted(base: np.ndarray, towards: np.ndarray, angle_deg: float) -> np.ndarray:
    """`base` turned by `angle_deg` towards `towards` (both unit, orthogonal)."""
    a = math.radians(angle_deg)
    return unit(math.cos(a) * base + math.sin(a) * towards)


@dataclass(frozen=True)
class ViewFamily:
    """A named standard view: what it targets and which way the beam goes."""

    name: str
    targets: tuple[str, ...]
    direction: tuple[float, float, float]
    perpendicular_to_long_axis: bool = False   # beam across elongated anatomy (spine, long bones)
    # A lateral projection looks the same from either side (mirrored); the C-arm's limits
    # usually allow only one of them.
    reversible: bool = False


def _family(name, targets, direction, across=False) -> ViewFamily:
    reversible = abs(float(np.dot(unit(direction), LEFT))) > 0.99
    return ViewFamily(name, tuple(targets), tuple(float(v) for v in unit(direction)), across, reversible)


def standard_families() -> list[ViewFamily]:
    """The standard radiographic views, from chest to skull (those present in a patient are used)."""
    families = [
        _family("chest_ap", LUNGS + ["heart"], ANTERIOR),
        _family("chest_lateral", LUNGS + ["heart"], LEFT),
        _family("abdomen_ap", ["liver", "stomach", "spleen", "kidney_left", "kidney_right", "pancreas"], ANTERIOR),
        _family("pelvis_ap", ["hip_left", "hip_right", "sacrum"], ANTERIOR),
        # Inlet: the beam runs along the pelvic brim's normal, radiographically "AP, 40 deg caudad"
        # from a tube above; from a source under the table that line is anterior-superior.
        _family("pelvis_inlet", ["hip_left", "hip_right", "sacrum"], tilted(ANTERIOR, SUPERIOR, 40)),
        _family("pelvis_outlet", ["hip_left", "hip_right", "sacrum"], tilted(ANTERIOR, -SUPERIOR, 40)),
        _family("pelvis_oblique_left", ["hip_left", "hip_right", "sacrum"], tilted(ANTERIOR, LEFT, 45)),
        _family("pelvis_oblique_right", ["hip_left", "hip_right", "sacrum"], tilted(ANTERIOR, -LEFT, 45)),
        _family("skull_ap", ["skull", "brain"], ANTERIOR),
        _family("skull_lateral", ["skull", "brain"], LEFT),
        _family("sternum_oblique", ["sternum"], tilted(ANTERIOR, -LEFT, 25)),
    ]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        lateral = sign * LEFT
        families += [
            _family(f"hip_ap_{side}", [f"hip_{side}", f"femur_{side}"], ANTERIOR),
            _family(f"femur_ap_{side}", [f"femur_{side}"], ANTERIOR, across=True),
            _family(f"femur_lateral_{side}", [f"femur_{side}"], lateral, across=True),
            _family(f"shoulder_ap_{side}", [f"humerus_{side}", f"scapula_{side}", f"clavicula_{side}"],
                    tilted(ANTERIOR, lateral, 35)),
            _family(f"humerus_ap_{side}", [f"humerus_{side}"], ANTERIOR, across=True),
            _family(f"ribs_oblique_{side}", [f"rib_{side}_{i}" for i in range(1, 13)], tilted(ANTERIOR, lateral, 30)),
            _family(f"kidney_ap_{side}", [f"kidney_{side}"], ANTERIOR),
        ]
    for region, members in VERTEBRAE.items():
        families += [
            _family(f"spine_ap_{region}", members, ANTERIOR, across=True),
            _family(f"spine_lateral_{region}", members, LEFT, across=True),
        ]
    return families


@dataclass(frozen=True)
class ViewSamplerConfig:
    image_size_px: int = 256
    detector_sizes_mm: tuple[float, ...] = (230.0, 300.0, 400.0)
    # target depth beyond the isocenter distance (mm): + moves it towards the detector (less
    # magnification); bounded so that a body still fits between the target and the detector
    depth_offset_mm: tuple[float, float] = (-120.0, 300.0)
    standard_tilt_deg: float = 5.0
    standard_jitter_fraction: float = 0.04     # of the field at the target
    random_cone_deg: float = 60.0
    random_jitter_fraction: float = 0.3
    fit_margin: float = 1.15                   # standard views: field >= margin x target extent
    min_structure_voxels: int = 200
    # Held out for validation with a single patient: these families, and views whose
    # LAO/RAO angle (from anterior, in the axial plane) lies in this band.
    held_out_families: tuple[str, ...] = ("spine_lateral_thoracic", "pelvis_oblique_left", "shoulder_ap_right")
    held_out_oblique_band_deg: tuple[float, float] = (30.0, 45.0)


@dataclass(frozen=True)
class ViewSample:
    family: str                  # a standard family or "random"
    primary: str                 # primary structure (random views) or family target set
    target_world: np.ndarray
    direction_world: np.ndarray  # requested beam direction
    pose: CArmPose
    config: CArmConfig
    angle_error_deg: float       # requested vs achieved direction (0 unless the limits bit)
    split: str = "train"
    extra: dict = field(default_factory=dict)


def oblique_angle_deg(direction: np.ndarray) -> float:
    """Angle from anterior in the axial plane (LAO/RAO magnitude), 0..180."""
    axial = np.array([direction[0], direction[1], 0.0])
    if np.linalg.norm(axial) < 1e-9:
        return 90.0
    return angle_between_deg(axial, ANTERIOR)


class ViewSampler:
    """Draws feasible C-arm views of one patient."""

    def __init__(self, anatomy: PatientAnatomy, config: ViewSamplerConfig | None = None,
                 carm: CArmConfig | None = None) -> None:
        self.anatomy = anatomy
        self.config = config or ViewSamplerConfig()
        self.carm = carm or CArmConfig.for_supine_patient(mirror_columns=True)
        self.families = [f for f in standard_families() if self._target(f) is not None]
        self.structures = sorted(n for n, s in anatomy.stats.items() if s.voxels >= self.config.min_structure_voxels)

    def _target(self, family: ViewFamily) -> StructureStats | None:
        present = self.anatomy.present(family.targets)
        if not present or len(present) < max(1, math.ceil(0.5 * len(family.targets))):
            return None
        return self.anatomy.union(present)

    def split_of(self, family: str, direction: np.ndarray) -> str:
        lo, hi = self.config.held_out_oblique_band_deg
        if family in self.config.held_out_families or lo <= oblique_angle_deg(direction) <= hi:
            return "val"
        return "train"

    def _device(self, rng: np.random.Generator, detector_mm: float | None = None) -> CArmConfig:
        size = self.config.image_size_px
        detector_mm = detector_mm or float(rng.choice(self.config.detector_sizes_mm))
        return CArmConfig(**{**self.carm.__dict__, "sensor_width_px": size, "sensor_height_px": size,
                             "pixel_size_mm": detector_mm / size})

    def _solve(self, family: str, primary: str, target: np.ndarray, direction: np.ndarray, depth_mm: float,
               config: CArmConfig, current: CArmPose | None = None) -> ViewSample | None:
        geometry = CArmGeometry(config)
        isocenter_point = target - depth_mm * direction
        solution = geometry.look_at(isocenter_point, direction, current)
        if solution.clamped and solution.angle_error_deg > 0.5:
            return None
        geometry.validate(solution.pose)
        return ViewSample(family, primary, target, direction, solution.pose, config, solution.angle_error_deg,
                          self.split_of(family, direction), {"depth_offset_mm": depth_mm})

    def standard(self, rng: np.random.Generator, family: ViewFamily | None = None, attempts: int = 20) -> ViewSample:
        """The family's canonical pose, then a small random turn of the joints (as a radiographer
        would set it up), so that the image keeps its canonical roll (spine vertical, head up)."""
        family = family or self.families[rng.integers(len(self.families))]
        target = self._target(family)
        if target is None:
            raise ValueError(f"view {family.name} needs {family.targets}, none present in this patient")
        base = np.asarray(family.direction)
        if family.perpendicular_to_long_axis and not family.reversible and target.elongation > 1.5:
            across = base - np.dot(base, target.long_axis) * target.long_axis
            base = unit(across) if np.linalg.norm(across) > 0.3 else base
        for attempt in range(attempts):
            direction = -base if family.reversible and attempt % 2 == 1 else base
            config = self._device(rng)
            extent = _extent_across(target, direction)
            magnification_needed = config.detector_size_mm[0] / (self.config.fit_margin * max(extent, 1.0))
            depth = config.source_to_detector_distance_mm / magnification_needed - config.source_to_isocenter_distance_mm
            depth = float(np.clip(depth + rng.normal(0, 15), *self.config.depth_offset_mm))
            field_mm = config.detector_size_mm[0] * (config.source_to_isocenter_distance_mm + depth) \
                / config.source_to_detector_distance_mm
            jitter = _perpendicular_jitter(direction, self.config.standard_jitter_fraction * field_mm, rng)
            sample = self._solve(family.name, family.name, target.centroid_world + jitter, direction, depth, config)
            if sample is not None:
                return self._turn_joints(sample, rng)
        raise RuntimeError(f"no feasible pose for view {family.name} in {attempts} attempts")

    def _turn_joints(self, sample: ViewSample, rng: np.random.Generator) -> ViewSample:
        geometry = CArmGeometry(sample.config)
        tilt = self.config.standard_tilt_deg
        angles = geometry.clamp(CArmPose(sample.pose.isocenter_mm,
                                         sample.pose.alpha_deg + rng.uniform(-tilt, tilt),
                                         sample.pose.beta_deg + rng.uniform(-tilt, tilt)))
        achieved = geometry.principal_ray_world(angles)
        # turn about the target, not the isocenter, so that it stays on the central ray
        point = sample.target_world - sample.extra["depth_offset_mm"] * achieved
        turned = geometry.pose_through_point(point, angles.alpha_deg, angles.beta_deg)
        if geometry.limit_violations(turned):
            return sample
        return replace(sample, pose=turned, direction_world=achieved,
                       split=self.split_of(sample.family, achieved))

    def random(self, rng: np.random.Generator, attempts: int = 50) -> ViewSample:
        for _ in range(attempts):
            primary = self.structures[rng.integers(len(self.structures))]
            stats = self.anatomy.stats[primary]
            direction = _direction_in_cone(ANTERIOR, self.config.random_cone_deg, rng)
            config = self._device(rng)
            depth = float(rng.uniform(*self.config.depth_offset_mm))
            field_mm = config.detector_size_mm[0] * (config.source_to_isocenter_distance_mm + depth) \
                / config.source_to_detector_distance_mm
            jitter = _perpendicular_jitter(direction, self.config.random_jitter_fraction * field_mm, rng)
            sample = self._solve("random", primary, stats.centroid_world + jitter, direction, depth, config)
            if sample is not None:
                return sample
        raise RuntimeError(f"no feasible random view in {attempts} attempts")


def _perturb(direction: np.ndarray, max_angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    axis = unit(np.cross(direction, rng.normal(size=3)))
    return unit(rotation_about_axis(axis, math.radians(rng.uniform(0, max_angle_deg))) @ direction)


def _direction_in_cone(axis: np.ndarray, half_angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform over the solid angle of a cone around `axis`."""
    cos_max = math.cos(math.radians(half_angle_deg))
    cos_theta = rng.uniform(cos_max, 1.0)
    sin_theta = math.sqrt(1.0 - cos_theta ** 2)
    phi = rng.uniform(0, 2 * math.pi)
    u = unit(np.cross(axis, [0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.cross(axis, [1.0, 0.0, 0.0]))
    v = np.cross(axis, u)
    return unit(cos_theta * axis + sin_theta * (math.cos(phi) * u + math.sin(phi) * v))


def _perpendicular_jitter(direction: np.ndarray, scale_mm: float, rng: np.random.Generator) -> np.ndarray:
    offset = rng.uniform(-scale_mm, scale_mm, size=3)
    return offset - np.dot(offset, direction) * direction


def _extent_across(stats: StructureStats, direction: np.ndarray) -> float:
    """Largest extent of a structure perpendicular to the beam (mm)."""
    widths = []
    for axis, extent in zip(stats.axes_world, stats.extent_mm):
        across = axis - np.dot(axis, direction) * direction
        widths.append(extent * np.linalg.norm(across))
    return float(max(widths))
