"""Patient variety from one labelled CT, honestly: random deformations of the patient.

Each variant combines an anisotropic scaling (+-10 %, applied through the affine, no
resampling), a crop of the scan range along the patient's long axis, a smooth elastic warp
(a coarse random displacement field, trilinearly upsampled), and HU noise and a global HU
shift. Labels follow the same warp (nearest neighbour), so masks stay exact for the variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..twin.patient import Patient


@dataclass(frozen=True)
class DeformationConfig:
    scale_range: tuple[float, float] = (0.9, 1.1)
    crop_fraction_max: float = 0.2          # of the slices, split between the two ends
    elastic_amplitude_mm: float = 8.0
    elastic_grid: tuple[int, int, int] = (5, 5, 4)
    hu_noise_std: float = 15.0
    hu_shift_range: tuple[float, float] = (-30.0, 30.0)


def deform_patient(patient: Patient, rng: np.random.Generator, config: DeformationConfig | None = None,
                   variant_id: str = "") -> Patient:
    config = config or DeformationConfig()
    hu, labels, world_from_voxel = _crop_slices(patient, rng, config.crop_fraction_max)
    hu, labels = _elastic(hu, labels, world_from_voxel, rng, config)
    hu = hu + rng.normal(0.0, config.hu_noise_std, size=hu.shape).astype(np.float32) \
        + np.float32(rng.uniform(*config.hu_shift_range))
    world_from_voxel = _scaled(world_from_voxel, hu.shape, rng.uniform(*config.scale_range, size=3))
    return Patient(f"{patient.patient_id}~{variant_id}" if variant_id else f"{patient.patient_id}~deformed",
                   hu.astype(np.float32), world_from_voxel, labels, dict(patient.structure_names))


def _crop_slices(patient: Patient, rng: np.random.Generator, max_fraction: float):
    axis = int(np.argmax(np.abs(patient.world_from_voxel[2, :3])))  # the voxel axis along S-I
    n = patient.shape[axis]
    lo = int(rng.uniform(0, max_fraction / 2) * n)
    hi = n - int(rng.uniform(0, max_fraction / 2) * n)
    index = [slice(None)] * 3
    index[axis] = slice(lo, hi)
    shift = np.zeros(3)
    shift[axis] = lo
    world_from_voxel = patient.world_from_voxel.copy()
    world_from_voxel[:3, 3] += world_from_voxel[:3, :3] @ shift
    labels = patient.labels[tuple(index)] if patient.labels is not None else None
    return patient.hu[tuple(index)], labels, world_from_voxel


def _elastic(hu, labels, world_from_voxel, rng, config: DeformationConfig):
    spacing = np.linalg.norm(world_from_voxel[:3, :3], axis=0)
    grid = [np.linspace(0, g - 1, n) for g, n in zip(config.elastic_grid, hu.shape)]
    coarse = rng.normal(0.0, config.elastic_amplitude_mm / 2, size=(3, *config.elastic_grid))
    mesh = np.meshgrid(*grid, indexing="ij")
    coordinates = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in hu.shape], indexing="ij"))
    for axis in range(3):
        displacement_vox = ndimage.map_coordinates(coarse[axis], mesh, order=1) / spacing[axis]
        coordinates[axis] += displacement_vox.astype(np.float32)
    warped_hu = ndimage.map_coordinates(hu, coordinates, order=1, mode="constant", cval=-1000.0)
    warped_labels = None
    if labels is not None:
        warped_labels = ndimage.map_coordinates(labels, coordinates, order=0, mode="constant", cval=0)
        warped_labels = warped_labels.astype(labels.dtype)
    return warped_hu.astype(np.float32), warped_labels


def _scaled(world_from_voxel: np.ndarray, shape, scales: np.ndarray) -> np.ndarray:
    """Scale about the volume's centre along the world axes."""
    centre = world_from_voxel[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + world_from_voxel[:3, 3]
    scale = np.diag(scales)
    result = world_from_voxel.copy()
    result[:3, :3] = scale @ world_from_voxel[:3, :3]
    result[:3, 3] = scale @ (world_from_voxel[:3, 3] - centre) + centre
    return result
