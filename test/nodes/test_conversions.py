"""Message conversions: round trips, and malformed images refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.nodes.conversions import (
    MessageError,
    camera_info_msg,
    carm_state_to_msg,
    collimation_from_msg,
    collimation_to_msg,
    image_from_msg,
    image_to_msg,
)


@pytest.mark.parametrize("encoding, dtype", [("mono8", np.uint8), ("mono16", np.uint16), ("32FC1", np.float32)])
def test_image_round_trip(encoding, dtype, rng):
    pixels = (rng.random((7, 9)) * 200).astype(dtype)
    msg = image_to_msg(pixels, encoding, Header(frame_id="carm_camera"))
    np.testing.assert_array_equal(image_from_msg(msg), pixels)


def test_big_endian_and_padded_rows_are_read_correctly():
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    msg = Image(height=3, width=4, encoding="mono16", is_bigendian=1, step=10)
    padded = np.zeros((3, 10), dtype=np.uint8)
    padded[:, :8] = pixels.astype(">u2").view(np.uint8).reshape(3, 8)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(image_from_msg(msg), pixels)


@pytest.mark.parametrize("change, reason", [
    (dict(encoding="bgr10"), "unsupported image encoding"),
    (dict(height=0), "empty"),
    (dict(step=2), "smaller than a row"),
    (dict(data=b"\x00" * 5), "bytes"),
    (dict(height=5000, width=5000, step=10000), "exceeds"),
])
def test_malformed_images_are_refused_with_a_reason(change, reason):
    msg = image_to_msg(np.zeros((4, 4), np.uint16), "mono16", Header())
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(MessageError, match=reason):
        image_from_msg(msg)


def test_nan_float_image_is_refused():
    msg = image_to_msg(np.array([[0.0, np.nan]], np.float32), "32FC1", Header())
    with pytest.raises(MessageError, match="NaN"):
        image_from_msg(msg)


def test_state_and_collimation_messages_carry_the_geometry():
    collimation = Collimation.rectangle(1, 2, 30, 40).with_iris(10, 15, 20)
    assert collimation_from_msg(collimation_to_msg(collimation)) == collimation
    state = CArmState(CArmConfig.for_supine_patient().with_image_size(256), CArmPose((1, 2, 3), 10, 20), collimation)
    msg = carm_state_to_msg(state, Header(frame_id="world"), moving=True)
    assert msg.sensor_width_px == 256 and msg.pixel_size_mm == pytest.approx(0.194 * 6) and msg.moving
    np.testing.assert_allclose(np.reshape(msg.index_from_world, (3, 4)), state.camera().index_from_world)
    np.testing.assert_allclose(msg.source_mm, state.camera().source_world)
    info = camera_info_msg(state.camera(), Header(frame_id="carm_camera"))
    assert info.width == 256 and info.k[2] == pytest.approx(127.5) and info.p[3] == 0
