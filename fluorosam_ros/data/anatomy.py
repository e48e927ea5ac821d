"""Geometry of a patient's labelled structures: voxel counts, centroids and principal axes (world mm).

Views are defined relative to these ("a small random perturbation of a canonical pose relative
to the organs' centroids and principal axes"), so they adapt to any patient and label map.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np
from scipy import ndimage

from ..twin.patient import Patient

MAX_SAMPLES_FOR_AXES = 20000


@dataclass(frozen=True)
class StructureStats:
    name: str
    label: int
    voxels: int
    centroid_world: np.ndarray
    axes_world: np.ndarray        # (3, 3) rows = principal axes, longest first
    extent_mm: np.ndarray         # (3,) standard deviation x 4 along each axis (about the full length)

    @property
    def long_axis(self) -> np.ndarray:
        return self.axes_world[0]

    @property
    def elongation(self) -> float:
        return float(self.extent_mm[0] / max(self.extent_mm[1], 1e-6))


class PatientAnatomy:
    """Per-structure statistics for one patient, computed once (a few seconds for a full CT)."""

    def __init__(self, patient: Patient, rng_seed: int = 0) -> None:
        if patient.labels is None:
            raise ValueError("the patient has no label map")
        self.patient = patient
        self._rng = np.random.default_rng(rng_seed)

    @cached_property
    def stats(self) -> dict[str, StructureStats]:
        labels = self.patient.labels
        boxes = ndimage.find_objects(labels)
        result = {}
        for value in self.patient.present_labels:
            box = boxes[int(value) - 1]
            if box is None:
                continue
            local = np.argwhere(labels[box] == value) + [s.start for s in box]
            name = self.patient.structure_names[int(value)]
            result[name] = self._describe(name, int(value), local)
        return result

    def _describe(self, name: str, label: int, voxel_indices: np.ndarray) -> StructureStats:
        world = voxel_indices @ self.patient.world_from_voxel[:3, :3].T + self.patient.world_from_voxel[:3, 3]
        centroid = world.mean(axis=0)
        sample = world if len(world) <= MAX_SAMPLES_FOR_AXES else world[
            self._rng.choice(len(world), MAX_SAMPLES_FOR_AXES, replace=False)]
        covariance = np.cov((sample - centroid).T) if len(sample) > 3 else np.eye(3)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        return StructureStats(name, label, len(world), centroid, eigenvectors[:, order].T,
                              4.0 * np.sqrt(np.maximum(eigenvalues[order], 0.0)))

    def present(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name in self.stats]

    def union(self, names: Iterable[str]) -> StructureStats | None:
        """Voxel-weighted combination of several structures (None when none is present)."""
        members = [self.stats[name] for name in self.present(names)]
        if not members:
            return None
        weights = np.array([m.voxels for m in members], dtype=float)
        centroid = np.average([m.centroid_world for m in members], axis=0, weights=weights)
        # second moments about the union's centroid, from each member's own
        covariance = np.zeros((3, 3))
        for member, weight in zip(members, weights):
            member_cov = member.axes_world.T @ np.diag((member.extent_mm / 4.0) ** 2) @ member.axes_world
            offset = member.centroid_world - centroid
            covariance += weight * (member_cov + np.outer(offset, offset))
        covariance /= weights.sum()
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        return StructureStats("+".join(m.name for m in members), -1, int(weights.sum()), centroid,
                              eigenvectors[:, order].T, 4.0 * np.sqrt(np.maximum(eigenvalues[order], 0.0)))
