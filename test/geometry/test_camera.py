from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.geometry.camera import CameraProjection
from fluorosam_ros.geometry.carm import CArmConfig, CArmGeometry, CArmPose


@pytest.fixture
def camera():
    geometry = CArmGeometry(CArmConfig.for_supine_patient().with_image_size(512))
    return geometry.camera(CArmPose((12, -30, 40), 25, -15))


def test_decomposition_reproduces_the_projection(camera, rng):
    k, camera_from_world = camera.intrinsic_and_camera_from_world
    rebuilt = k @ camera_from_world[:3, :]
    points = rng.uniform(-200, 200, (50, 3))
    np.testing.assert_allclose(CameraProjection(rebuilt, 512, 512, 1020).project(points),
                               camera.project(points), atol=1e-6)
    assert np.linalg.det(camera_from_world[:3, :3]) == pytest.approx(1.0)
    assert k[0, 0] == pytest.approx(1020 / (0.194 * 3))
    np.testing.assert_allclose(k[:2, 2], [256, 256], atol=1e-9)


def test_camera_info_uses_opencv_pixel_centres(camera):
    k, p = camera.camera_info_k_p()
    np.testing.assert_allclose(k[:2, 2], [255.5, 255.5], atol=1e-9)
    np.testing.assert_allclose(p[:, :3], k)
    np.testing.assert_allclose(p[:, 3], 0)


def test_detector_grid_lies_on_the_detector_and_projects_to_pixel_centres(camera):
    pixel00, col_step, row_step = camera.detector_grid_world()
    np.testing.assert_allclose(camera.depth_mm(pixel00), 1020, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(col_step), 0.194 * 3, rtol=1e-9)
    points = np.stack([pixel00, pixel00 + 10 * col_step + 3 * row_step])
    np.testing.assert_allclose(camera.project(points), [[0.5, 0.5], [10.5, 3.5]], atol=1e-6)


def test_source_is_the_null_space(camera):
    homogeneous = camera.index_from_world @ np.append(camera.source_world, 1.0)
    np.testing.assert_allclose(homogeneous, 0, atol=1e-6)
    assert camera.depth_mm(camera.source_world + 100 * camera.principal_ray_world)[0] == pytest.approx(100)


def test_mirrored_detector_keeps_a_proper_rotation(camera):
    mirror = np.diag([-1.0, 1.0, 1.0])
    mirror[0, 2] = 512
    mirrored = CameraProjection(mirror @ camera.index_from_world, 512, 512, 1020)
    k, camera_from_world = mirrored.intrinsic_and_camera_from_world
    assert np.linalg.det(camera_from_world[:3, :3]) == pytest.approx(1.0)
    assert k[1, 1] < 0 or k[0, 0] < 0
    np.testing.assert_allclose(mirrored.source_world, camera.source_world, atol=1e-6)


def test_rejects_degenerate_matrices():
    with pytest.raises(ValueError):
        CameraProjection(np.zeros((3, 4)), 10, 10, 1000)
    with pytest.raises(ValueError):
        CameraProjection(np.full((3, 4), np.nan), 10, 10, 1000)
