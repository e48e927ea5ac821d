"""Homogeneous transforms and rotations (numpy only).

Names follow the `a_from_b` convention: `world_from_camera @ p_camera` gives a point in the world.
"""

from __future__ import annotations

import numpy as np

ArrayLike = np.ndarray | list | tuple


def rotation_about_axis(axis: ArrayLike, angle_rad: float) -> np.ndarray:
    """3x3 right-handed rotation by `angle_rad` about `axis` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=float)
    norm = np.linalg.norm(axis)
    if norm == 0:
        raise ValueError("rotation axis has zero length")
    x, y, z = axis / norm
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return c * np.eye(3) + s * cross + (1.0 - c) * np.outer([x, y, z], [x, y, z])


def rigid(rotation: np.ndarray | None = None, translation: ArrayLike | None = None) -> np.ndarray:
    """4x4 transform from a 3x3 rotation and a translation."""
    transform = np.eye(4)
    if rotation is not None:
        transform[:3, :3] = rotation
    if translation is not None:
        transform[:3, 3] = np.asarray(translation, dtype=float)
    return transform


def invert_rigid(transform: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform without a general matrix inverse."""
    rotation, translation = transform[:3, :3], transform[:3, 3]
    return rigid(rotation.T, -rotation.T @ translation)


def apply(transform: np.ndarray, points: ArrayLike) -> np.ndarray:
    """Apply a 4x4 transform to points of shape (3,) or (N, 3)."""
    points = np.asarray(points, dtype=float)
    flat = np.atleast_2d(points)
    out = flat @ transform[:3, :3].T + transform[:3, 3]
    return out.reshape(points.shape)


def apply_direction(transform: np.ndarray, vectors: ArrayLike) -> np.ndarray:
    """Rotate direction vectors (no translation) by the linear part of a 4x4 transform."""
    vectors = np.asarray(vectors, dtype=float)
    return (np.atleast_2d(vectors) @ transform[:3, :3].T).reshape(vectors.shape)


def project(index_from_world: np.ndarray, points_world: ArrayLike) -> np.ndarray:
    """Project world points (N, 3) through a 3x4 matrix to pixel coordinates (N, 2) = (col, row)."""
    points_world = np.atleast_2d(np.asarray(points_world, dtype=float))
    homogeneous = points_world @ index_from_world[:, :3].T + index_from_world[:, 3]
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def unit(vector: ArrayLike) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"cannot normalise the vector {vector.tolist()}")
    return vector / norm


def angle_between_deg(a: ArrayLike, b: ArrayLike) -> float:
    cosine = float(np.clip(np.dot(unit(a), unit(b)), -1.0, 1.0))
    return float(np.degrees(np.arccos(cosine)))
