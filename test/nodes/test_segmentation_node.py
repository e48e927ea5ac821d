"""segmentation_node and carm_sim as separate processes; /segment asked from this process."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import rclpy
from ros_harness import launched, read_logs
from sensor_msgs.msg import Image

from fluorosam_ros.nodes.commander import CArmCommander

pytestmark = [pytest.mark.ros, pytest.mark.timeout(400)]
SIZE = 128


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("segmentation_logs")
    # FLUOROSAM_TEST_CHECKPOINT lets a developer try other weights; the default is the bundled one.
    checkpoint = os.environ.get("FLUOROSAM_TEST_CHECKPOINT", "")
    with launched("carm_sim.launch.yaml", log_dir, image_size_px=SIZE) as carm, \
            launched("segmentation.launch.yaml", log_dir, checkpoint=checkpoint, device="cpu") as segmentation:
        rclpy.init()
        commander = CArmCommander("test_segmentation_client")
        try:
            if not commander.wait_until_ready(timeout_s=120) or commander.wait_for_frame(timeout_s=60) is None:
                pytest.fail("carm_sim did not come up:\n" + read_logs(log_dir))
            if not commander.segment_client.wait_for_service(timeout_sec=180):
                pytest.fail("segmentation_node did not come up:\n" + read_logs(log_dir))
            if not node_has_a_frame(commander):
                pytest.fail("segmentation_node never received a frame:\n" + read_logs(log_dir))
            yield commander, log_dir
        finally:
            commander.close()
            rclpy.try_shutdown()
        processes = {**carm.processes, **segmentation.processes}
        assert all(p.poll() is None for p in processes.values()), "a node died during the tests:\n" + read_logs(log_dir)


def node_has_a_frame(commander: CArmCommander, timeout_s: float = 120.0) -> bool:
    """Acquire until segmentation_node holds a frame: frames are volatile and best-effort, so one
    published before its subscription matched (a slow start-up) never reaches it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        commander.acquire()
        response = commander.segment(text="spine")
        if response is not None and "no frame" not in response.message:
            return True
        time.sleep(1.0)
    return False


def test_segment_latest_frame_returns_a_mask_with_its_pose(system):
    commander, log_dir = system
    response = commander.segment(text="lungs")
    assert response is not None, read_logs(log_dir)
    assert response.success, response.message
    result = response.result
    assert result.prompt == "lungs"
    assert (result.mask.height, result.mask.width, result.mask.encoding) == (SIZE, SIZE, "mono8")
    assert len(result.iou_scores) == 3 and 0.0 <= result.absent_score <= 1.0
    mask = np.frombuffer(bytes(result.mask.data), dtype=np.uint8).reshape(SIZE, SIZE)
    if result.found:
        assert mask.any() and result.box.width > 0
        rows, cols = np.nonzero(mask)
        assert result.box.x_offset == cols.min() and result.box.y_offset == rows.min()
    else:
        assert not mask.any()
    # the frame's pose travels with the mask, so that it can be back-projected
    assert len(result.carm_state.index_from_world) == 12 and any(result.carm_state.index_from_world)
    assert result.carm_state.sensor_width_px == SIZE


def test_a_free_text_prompt_is_read_as_the_structure_it_names(system):
    commander, log_dir = system
    response = commander.segment(text="I need a mask of the heart in this image")
    assert response is not None, read_logs(log_dir)
    assert response.success and "read as 'heart'" in response.message, response.message
    assert response.result.prompt == "I need a mask of the heart in this image"   # the request, as asked


def test_points_and_a_given_image(system):
    commander, _ = system
    frame = commander.frame
    image = Image(height=SIZE, width=SIZE, encoding="mono16", step=2 * SIZE)
    image.data = frame.pixels.astype("<u2").tobytes()
    response = commander.segment(points_xy=[SIZE / 2, SIZE / 2], labels=[1], image=image)
    assert response is not None and response.success, response and response.message
    mask = np.frombuffer(bytes(response.result.mask.data), dtype=np.uint8).reshape(SIZE, SIZE)
    assert mask.any()


@pytest.mark.parametrize("kwargs, reason", [
    ({}, "text prompt, points, or both"),
    ({"text": "   "}, "empty"),
    ({"text": "x" * 10_000}, "characters"),
    ({"points_xy": [5000.0, 3.0], "labels": [1]}, "outside"),
    ({"points_xy": [3.0, 3.0, 4.0], "labels": [1]}, "2 per label"),
    ({"points_xy": [3.0, 3.0], "labels": [7]}, "labels must be 1"),
])
def test_bad_prompts_are_refused_and_the_node_keeps_answering(system, kwargs, reason):
    commander, _ = system
    response = commander.segment(**kwargs)
    assert response is not None and not response.success
    assert reason in response.message
    assert commander.segment(text="spine").success


def test_malformed_image_is_refused(system):
    commander, _ = system
    image = Image(height=SIZE, width=SIZE, encoding="mono16", step=2 * SIZE)
    image.data = bytes(10)  # far fewer bytes than step x height
    response = commander.segment(text="heart", image=image)
    assert response is not None and not response.success and "bytes" in response.message
    image.encoding = "bgr42"
    response = commander.segment(text="heart", image=image)
    assert not response.success and "encoding" in response.message
