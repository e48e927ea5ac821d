"""The twin prior: a structure's 3-D shape from the digital twin's CT labels.

Frames: `twin` is the CT's own frame (Patient.world_from_voxel maps voxels into it, LPS mm).
`world_from_twin` is the registration that places the twin on the patient on the table. In
simulation the rendered patient IS the CT, so the true `world_from_twin` is the identity and a
registration error is injected as a known rigid transform (default 15 mm and 5 deg, drawn in a
random but seeded direction), which makes tests of the fused mode meaningful.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..geometry.transforms import apply, invert_rigid, rigid, rotation_about_axis
from ..twin.patient import Patient, PatientError
from .safety import PlanningInputError, finite_array, finite_scalar
from .structure import LocalisedStructure

log = logging.getLogger(__name__)

MIN_POINTS = 2000  # below this many strided points, use every voxel (thin structures: ribs)


@dataclass(frozen=True)
class RegistrationErrorConfig:
    """An injected twin-to-patient registration error: a rotation of exactly `rotation_deg`
    about a random axis through the structure's centre, then a translation of exactly
    `translation_mm` in a random direction. `seed` fixes both directions."""

    translation_mm: float = 15.0
    rotation_deg: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        finite_scalar("translation_mm", self.translation_mm, minimum=0.0)
        finite_scalar("rotation_deg", self.rotation_deg, minimum=0.0, maximum=180.0)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)


def sample_registration_error(config: RegistrationErrorConfig, centre_world) -> np.ndarray:
    """4x4 rigid error E (world_from_world): the twin believes a point x is at E @ x. Rotating
    about `centre_world` keeps the error at that point equal to `translation_mm`."""
    centre = finite_array("error centre", centre_world, (3,))
    rng = np.random.default_rng(config.seed)
    rotation = rotation_about_axis(_random_unit(rng), math.radians(config.rotation_deg))
    translation = config.translation_mm * _random_unit(rng)
    return rigid(translation=centre + translation) @ rigid(rotation) @ rigid(translation=-centre)


def rigid_difference(a_from_b: np.ndarray, truth_a_from_b: np.ndarray, at_world) -> tuple[float, float]:
    """(translation error at `at_world` in mm, rotation error in deg) between two rigid maps."""
    point = finite_array("evaluation point", at_world, (3,))
    translation = float(np.linalg.norm(apply(a_from_b, point) - apply(truth_a_from_b, point)))
    relative = a_from_b[:3, :3] @ truth_a_from_b[:3, :3].T
    cosine = float(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))
    return translation, math.degrees(math.acos(cosine))


class TwinPrior:
    """Structures from the twin's label map, placed in the world by `world_from_twin`."""

    def __init__(self, patient: Patient, world_from_twin: np.ndarray | None = None,
                 point_spacing_mm: float = 3.0) -> None:
        if patient.labels is None:
            raise PatientError("the twin prior needs a patient with a label map")
        self.patient = patient
        matrix = np.eye(4) if world_from_twin is None else finite_array("world_from_twin", world_from_twin, (4, 4))
        if not np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-6):
            raise PlanningInputError("world_from_twin must be rigid")
        self.world_from_twin = matrix
        self.point_spacing_mm = finite_scalar("point_spacing_mm", point_spacing_mm, minimum=0.1)
        self._points: dict[str, tuple[np.ndarray, float]] = {}

    @classmethod
    def with_injected_error(cls, patient: Patient, error: RegistrationErrorConfig, structure: str | None = None,
                            point_spacing_mm: float = 3.0) -> "TwinPrior":
        """A twin whose registration is off by `error`, rotated about `structure`'s centroid
        (default: the CT's centre)."""
        prior = cls(patient, None, point_spacing_mm)
        centre = prior.structure_points_twin(structure)[0].mean(axis=0) if structure else patient.center_world
        prior.world_from_twin = sample_registration_error(error, centre)
        log.info("twin prior: injected registration error %.1f mm / %.1f deg (seed %d)",
                 error.translation_mm, error.rotation_deg, error.seed)
        return prior

    def with_registration(self, world_from_twin: np.ndarray) -> "TwinPrior":
        """The same twin (sharing its point cache) under another registration."""
        other = TwinPrior.__new__(TwinPrior)
        other.patient, other.point_spacing_mm, other._points = self.patient, self.point_spacing_mm, self._points
        other.world_from_twin = finite_array("world_from_twin", world_from_twin, (4, 4))
        return other

    @property
    def twin_from_world(self) -> np.ndarray:
        return invert_rigid(self.world_from_twin)

    def structure_points_twin(self, name: str) -> tuple[np.ndarray, float]:
        """(voxel centres of `name` on a grid strided to about `point_spacing_mm`, twin frame mm;
        the achieved spacing). Cached per structure."""
        if name not in self._points:
            wanted = [self.patient.label_of(member) for member in self.members_of(name)]
            spacing = self.patient.spacing_mm
            stride = np.maximum(1, np.round(self.point_spacing_mm / spacing)).astype(int)
            offset = stride // 2  # sample block centres, not block corners
            labels = self.patient.labels[offset[0]::stride[0], offset[1]::stride[1], offset[2]::stride[2]]
            indices = np.argwhere(np.isin(labels, wanted)) * stride + offset
            if len(indices) < MIN_POINTS:
                stride = np.ones(3, dtype=int)
                indices = np.argwhere(np.isin(self.patient.labels, wanted))
            if len(indices) == 0:
                raise PatientError(f"structure {name!r} has no voxels in the twin")
            points = apply(self.patient.world_from_voxel, indices.astype(float))
            self._points[name] = (points, float(np.cbrt(np.prod(stride * spacing))))
        return self._points[name]

    def members_of(self, name: str) -> tuple[str, ...]:
        """The twin's label names behind `name` (a label itself, or a vocabulary group)."""
        if name in self.patient.structure_names.values():
            return (name,)
        from .anatomy import resolve_target  # the vocabulary loads lazily

        return resolve_target(name, self.patient.structure_names.values()).members

    def structure_points_world(self, name: str) -> np.ndarray:
        return apply(self.world_from_twin, self.structure_points_twin(name)[0])

    def localise(self, name: str, confidence: float = 0.5) -> LocalisedStructure:
        """The structure where the twin believes it is. `confidence` is the caller's trust in
        the registration (the twin alone cannot check itself against images)."""
        points, spacing = self.structure_points_twin(name)
        return LocalisedStructure.from_points(name, "twin", apply(self.world_from_twin, points), spacing,
                                              confidence, {"world_from_twin": self.world_from_twin.copy()})
