"""Analytic phantoms as `Patient`s, for renderer tests with known answers."""

from __future__ import annotations

import numpy as np

from fluorosam_ros.twin.patient import Patient


def oblique_affine(spacing_mm=(0.5, 0.6, 0.8), origin_mm=(-40.0, -45.0, -50.0)) -> np.ndarray:
    """An LAS-like affine: axis 0 flipped, anisotropic spacing, so no convention is taken for granted."""
    world_from_voxel = np.diag([*spacing_mm, 1.0])
    world_from_voxel[0, 0] *= -1
    world_from_voxel[:3, 3] = origin_mm
    world_from_voxel[0, 3] = -origin_mm[0]
    return world_from_voxel


def voxel_centres_world(shape, world_from_voxel) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    return grid @ world_from_voxel[:3, :3].T + world_from_voxel[:3, 3]


def sphere_patient(radius_mm: float = 25.0, hu: float = 0.0, shape=(160, 150, 110),
                   supersample: int = 3) -> tuple[Patient, np.ndarray]:
    """A sphere (label 1) of uniform HU in air, centred in the volume. Returns (patient, centre).

    Partial-volume voxels get the fraction of their sub-samples inside the sphere, so the
    voxel field converges to the analytic sphere faster than a hard threshold would."""
    world_from_voxel = oblique_affine()
    centres = voxel_centres_world(shape, world_from_voxel)
    centre = centres[tuple(n // 2 for n in shape)]
    spacing = np.abs(np.diag(world_from_voxel)[:3])
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    inside = np.zeros(shape, dtype=np.float32)
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                shifted = centres + np.array([dx, dy, dz]) * spacing
                inside += (np.linalg.norm(shifted - centre, axis=-1) <= radius_mm)
    fraction = inside / supersample ** 3
    hu_volume = -1000.0 + fraction * (hu + 1000.0)
    labels = (fraction >= 0.5).astype(np.uint16)
    return Patient("sphere", hu_volume.astype(np.float32), world_from_voxel, labels, {1: "sphere"}), centre


def box_patient(half_size_mm=(20.0, 15.0, 10.0), hu: float = 0.0) -> tuple[Patient, np.ndarray, np.ndarray]:
    """An axis-aligned box whose faces lie on voxel boundaries (label 1): exact for Siddon."""
    spacing = np.array([0.5, 0.6, 0.8])
    half_counts = np.round(np.asarray(half_size_mm) / spacing).astype(int)
    shape = tuple(2 * half_counts + 40)
    world_from_voxel = np.diag([*spacing, 1.0])
    world_from_voxel[:3, 3] = -(np.asarray(shape) - 1) / 2 * spacing
    labels = np.zeros(shape, dtype=np.uint16)
    lo = np.asarray(shape) // 2 - half_counts
    labels[lo[0]:lo[0] + 2 * half_counts[0], lo[1]:lo[1] + 2 * half_counts[1], lo[2]:lo[2] + 2 * half_counts[2]] = 1
    hu_volume = np.where(labels == 1, hu, -1000.0).astype(np.float32)
    box_min = (lo - 0.5) * spacing + world_from_voxel[:3, 3]
    box_max = box_min + 2 * half_counts * spacing
    return Patient("box", hu_volume, world_from_voxel, labels, {1: "box"}), box_min, box_max
