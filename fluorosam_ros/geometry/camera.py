"""A pinhole X-ray camera given by its 3x4 `index_from_world` projection.

Pixel coordinates are (col, row) in DeepDRR's index convention: pixel (row r, col c) covers
[c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5). ROS CameraInfo (OpenCV) puts pixel
centres at integers; `camera_info_k_p` shifts the principal point by half a pixel. The
renderer and the ROS CameraInfo both derive everything from this one matrix, so the images we
publish and the geometry we advertise cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .transforms import project


@dataclass(frozen=True)
class CameraProjection:
    index_from_world: np.ndarray
    sensor_width: int
    sensor_height: int
    source_to_detector_distance_mm: float

    def __post_init__(self) -> None:
        matrix = np.asarray(self.index_from_world, dtype=float)
        if matrix.shape != (3, 4) or not np.all(np.isfinite(matrix)):
            raise ValueError("index_from_world must be a finite 3x4 matrix")
        if abs(np.linalg.det(matrix[:, :3])) < 1e-12:
            raise ValueError("index_from_world is degenerate (its left 3x3 block is singular)")
        object.__setattr__(self, "index_from_world", matrix)

    @cached_property
    def normalized(self) -> np.ndarray:
        """The same projection scaled so that its third row gives depth along the principal ray in mm.

        Like DeepDRR's (and any K[R|t] with K[2,2] = 1), the homogeneous w must be positive for
        points in front of the source; a mirrored detector flips det but not w."""
        return self.index_from_world / np.linalg.norm(self.index_from_world[2, :3])

    @cached_property
    def source_world(self) -> np.ndarray:
        """Camera centre = the X-ray source, world mm (the null space of the projection)."""
        m = self.index_from_world[:, :3]
        return -np.linalg.solve(m, self.index_from_world[:, 3])

    @cached_property
    def principal_ray_world(self) -> np.ndarray:
        """Unit vector from the source towards the detector along the optical axis."""
        return self.normalized[2, :3].copy()

    def depth_mm(self, points_world: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points_world)
        return points @ self.normalized[2, :3] + self.normalized[2, 3]

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixel coordinates (col, row)."""
        return project(self.index_from_world, points_world)

    def detector_grid_world(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World position of pixel (0, 0)'s centre and the steps per column and per row (mm)."""
        ray_from_index = np.linalg.inv(self.normalized[:, :3])  # (u, v, 1) -> ray with unit depth
        sdd = self.source_to_detector_distance_mm
        pixel00 = self.source_world + sdd * (ray_from_index @ np.array([0.5, 0.5, 1.0]))
        return pixel00, sdd * ray_from_index[:, 0], sdd * ray_from_index[:, 1]

    def index_to_world_on_detector(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Continuous pixel coordinates (col, row) -> points on the detector plane, world mm."""
        pixel00, col_step, row_step = self.detector_grid_world()
        cols = np.asarray(cols, dtype=float) - 0.5
        rows = np.asarray(rows, dtype=float) - 0.5
        return pixel00 + cols[..., None] * col_step + rows[..., None] * row_step

    # ---- decomposition for ROS CameraInfo -------------------------------------------------
    @cached_property
    def intrinsic_and_camera_from_world(self) -> tuple[np.ndarray, np.ndarray]:
        """K (3x3, positive focal lengths, K[2,2]=1) and the 4x4 camera_from_world.

        The camera frame is the ROS optical frame: x along increasing columns, y along
        increasing rows, z from the source towards the detector. When the detector is
        mirrored relative to that frame (a flip), fy is negative rather than breaking rotation.
        """
        m = self.normalized[:, :3]
        k, r = _rq(m)
        signs = np.diag(np.sign(np.diag(k)))
        k, r = k @ signs, signs @ r
        if np.linalg.det(r) < 0:  # mirrored image: keep R proper, put the flip into fy
            flip = np.diag([1.0, -1.0, 1.0])
            k, r = k @ flip, flip @ r
        scale = k[2, 2]
        k = k / scale
        t = np.linalg.solve(k, self.normalized[:, 3] / scale)
        camera_from_world = np.eye(4)
        camera_from_world[:3, :3] = r
        camera_from_world[:3, 3] = t
        return k, camera_from_world

    @property
    def intrinsic(self) -> np.ndarray:
        return self.intrinsic_and_camera_from_world[0]

    @property
    def world_from_camera(self) -> np.ndarray:
        return np.linalg.inv(self.intrinsic_and_camera_from_world[1])

    def camera_info_k_p(self) -> tuple[np.ndarray, np.ndarray]:
        """CameraInfo K (3x3) and P (3x4 = [K | 0]) in the camera's optical frame, with OpenCV's
        pixel-centre convention (centres at integers, half a pixel left/up of ours)."""
        k = self.intrinsic.copy()
        k[0, 2] -= 0.5
        k[1, 2] -= 0.5
        return k, np.hstack([k, np.zeros((3, 1))])


def _rq(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ decomposition of a 3x3 matrix: matrix = upper-triangular @ orthogonal."""
    flip = np.eye(3)[::-1]
    q, r = np.linalg.qr((flip @ matrix).T)
    upper = flip @ r.T @ flip
    orthogonal = flip @ q.T
    return upper, orthogonal
