"""Scenes for the planner's core (test/control): analytic masks with known answers and poses."""

from __future__ import annotations

import numpy as np

from fluorosam_ros.geometry.camera import CameraProjection
from fluorosam_ros.geometry.carm import CArmGeometry, CArmPose


def sphere_mask(camera: CameraProjection, centre: np.ndarray, radius_mm: float) -> np.ndarray:
    """Exact silhouette of a sphere: pixels whose central ray passes within `radius_mm` of it."""
    cols, rows = np.meshgrid(np.arange(camera.sensor_width) + 0.5, np.arange(camera.sensor_height) + 0.5)
    directions = camera.index_to_world_on_detector(cols, rows) - camera.source_world
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    to_centre = np.asarray(centre, dtype=float) - camera.source_world
    along = directions @ to_centre
    perpendicular = to_centre - along[..., None] * directions
    return np.linalg.norm(perpendicular, axis=-1) <= radius_mm


def box_mask(camera: CameraProjection, box_min: np.ndarray, box_max: np.ndarray, samples: int = 160) -> np.ndarray:
    """Silhouette of an axis-aligned box: the convex hull of its projected corners (exact for a
    box under a pinhole projection)."""
    from scipy.spatial import Delaunay

    corners = np.array([[x, y, z] for x in (box_min[0], box_max[0]) for y in (box_min[1], box_max[1])
                        for z in (box_min[2], box_max[2])])
    hull = Delaunay(camera.project(corners))
    cols, rows = np.meshgrid(np.arange(camera.sensor_width) + 0.5, np.arange(camera.sensor_height) + 0.5)
    inside = hull.find_simplex(np.column_stack([cols.ravel(), rows.ravel()])) >= 0
    return inside.reshape(cols.shape)


def pose_at(geometry: CArmGeometry, point, alpha_deg: float, beta_deg: float, depth_mm: float = 0.0) -> CArmPose:
    """The pose with these angles whose central ray passes through `point`, `depth_mm` beyond the isocenter."""
    ray = geometry.principal_ray_world(CArmPose(alpha_deg=alpha_deg, beta_deg=beta_deg))
    return geometry.pose_through_point(np.asarray(point) - depth_mm * ray, alpha_deg, beta_deg)
