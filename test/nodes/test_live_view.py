"""live_view: the pure translations (frames, collimator, mask outline, C-arm geometry, log lines)
without a server, the shipped layout and launch wiring, and one ROS test: carm_sim and live_view
as processes, a Foxglove WebSocket client that checks what is advertised and streamed."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from foxglove_client import FoxgloveClient, png_size
from PIL import Image as PILImage
from std_msgs.msg import Header

from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.launch_runner import NODE_MODULES, load_launch_file
from fluorosam_ros.msg import Intent, PlanEvent
from fluorosam_ros.nodes import live_view as lv
from fluorosam_ros.nodes.conversions import carm_state_to_msg

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 64


def state_msg(alpha=20.0, beta=-15.0, isocenter=(10.0, -20.0, -170.0), size=SIZE, collimation=None):
    config = CArmConfig.for_supine_patient(mirror_columns=True).with_image_size(size)
    state = CArmState(config, CArmPose(isocenter, alpha, beta), collimation or Collimation.open())
    from builtin_interfaces.msg import Time

    return state, carm_state_to_msg(state, Header(stamp=Time(sec=12, nanosec=345), frame_id="world"))


# ---- frames -----------------------------------------------------------------------------------
def test_to_mono8_keeps_display_scales_windows_floats_and_greys_colour():
    mono16 = np.array([[0, 256, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(lv.to_mono8(mono16), [[0, 1, 255]])
    mono8 = np.array([[3, 200]], dtype=np.uint8)
    np.testing.assert_array_equal(lv.to_mono8(mono8), mono8)
    floats = np.array([[2.0, 3.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(lv.to_mono8(floats), [[0, 128, 255]])
    np.testing.assert_array_equal(lv.to_mono8(np.full((2, 2), 7.0)), np.zeros((2, 2)))
    rgb = np.array([[[30, 60, 90]]], dtype=np.uint8)
    np.testing.assert_array_equal(lv.to_mono8(rgb), [[60]])
    with pytest.raises(ValueError):
        lv.to_mono8(np.zeros(5))


def test_png_is_lossless_and_image_messages_encode(rng):
    mono8 = (rng.random((SIZE, SIZE + 8)) * 255).astype(np.uint8)
    data = lv.encode_png(mono8)
    np.testing.assert_array_equal(np.asarray(PILImage.open(io.BytesIO(data))), mono8)
    _, msg = state_msg()
    compressed = lv.image_message(mono8, msg.header.stamp, "carm_camera", "png").encode()
    assert png_size(compressed) == (SIZE + 8, SIZE)
    raw = lv.image_message(mono8, msg.header.stamp, "carm_camera", "raw").encode()
    assert mono8.tobytes() in raw


# ---- collimator -------------------------------------------------------------------------------
def test_collimator_outline_is_the_field_rectangle_in_image_pixels():
    assert lv.collimator_outline(Collimation.open(), (SIZE, SIZE)) is None
    rectangle = Collimation.rectangle(10, 12, 50, 40)
    outline = lv.collimator_outline(rectangle, (SIZE, SIZE))
    np.testing.assert_allclose(outline.corners, [[10, 12], [50, 12], [50, 40], [10, 40]])
    assert outline.iris is None
    # a state of the full 1536 px detector annotating a 384 px read-out: scaled by 1/4
    scaled = lv.collimator_outline(rectangle.with_iris(100, 768, 700), (1536, 1536), (384, 384))
    np.testing.assert_allclose(scaled.corners, np.array([[10, 12], [50, 12], [50, 40], [10, 40]]) / 4)
    np.testing.assert_allclose(scaled.iris, (192, 175, 25))
    with pytest.raises(ValueError):
        lv.collimator_outline(rectangle, (0, 0))
    assert lv.collimator_message(scaled, Header().stamp, "alpha 0", 384).encode()


# ---- mask outline -----------------------------------------------------------------------------
def _edge_length(segments: np.ndarray) -> float:
    return float(np.abs(segments[:, 1] - segments[:, 0]).sum())


def _brute_force_perimeter(mask: np.ndarray) -> int:
    padded = np.pad(mask, 1)
    return int(sum(np.sum(padded[1:-1, 1:-1] & ~np.roll(padded, shift, axis)[1:-1, 1:-1])
                   for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1))))


def test_mask_outline_runs_along_pixel_edges():
    mask = np.zeros((8, 10), dtype=bool)
    mask[2:6, 3:8] = True  # rows 2..5, columns 3..7: the square [3, 8] x [2, 6]
    segments = lv.mask_boundary_segments(mask)
    assert len(segments) == 4
    as_set = {tuple(map(tuple, s)) for s in segments}
    assert as_set == {((3, 2), (8, 2)), ((3, 6), (8, 6)), ((3, 2), (3, 6)), ((8, 2), (8, 6))}
    assert len(lv.mask_boundary_segments(np.zeros((5, 5), bool))) == 0
    full = lv.mask_boundary_segments(np.ones((4, 6), bool))
    assert segments.dtype == float and np.all(full >= 0) and full[..., 0].max() == 6 and full[..., 1].max() == 4


def test_mask_outline_of_any_shape_has_the_mask_perimeter(rng):
    mask = np.zeros((40, 50), dtype=bool)
    mask[5:30, 8:20] = True
    mask[20:35, 15:45] = True           # an L
    mask[10:14, 30:34] = True           # and an island
    mask[12, 12] = False                # with a hole
    segments = lv.mask_boundary_segments(mask)
    assert _edge_length(segments) == _brute_force_perimeter(mask)
    # every segment is horizontal or vertical and on the pixel grid
    d = segments[:, 1] - segments[:, 0]
    assert np.all((d[:, 0] == 0) | (d[:, 1] == 0)) and np.all(segments == np.round(segments))


def test_a_ragged_mask_is_outlined_coarser_within_the_budget(rng):
    noise = rng.random((128, 128)) > 0.5
    assert _brute_force_perimeter(noise) > 4000
    segments = lv.mask_boundary_segments(noise, max_segments=2000)
    assert 0 < len(segments) <= 2000
    assert segments[..., 0].max() <= 128 and segments[..., 1].max() <= 128


# ---- C-arm geometry ---------------------------------------------------------------------------
def test_carm_view_puts_source_detector_and_beam_where_the_camera_is():
    collimation = Collimation.rectangle(16, 8, 48, 40)
    state, msg = state_msg(collimation=collimation)
    camera = state.camera()
    view = lv.carm_view(msg)
    np.testing.assert_allclose(view.source, camera.source_world, atol=1e-6)
    np.testing.assert_allclose(view.source, np.asarray(msg.source_mm), atol=1e-6)
    np.testing.assert_allclose(view.isocenter, state.pose.isocenter_mm)
    config = state.config
    assert np.linalg.norm(view.isocenter - view.source) == pytest.approx(config.source_to_isocenter_distance_mm)
    assert np.linalg.norm(view.detector_center - view.source) == pytest.approx(config.source_to_detector_distance_mm)
    # the central ray passes through the isocenter and hits the detector square-on
    towards_isocenter = (view.isocenter - view.source) / np.linalg.norm(view.isocenter - view.source)
    np.testing.assert_allclose(view.principal_ray, towards_isocenter, atol=1e-9)
    edges = np.diff(np.vstack([view.detector_corners, view.detector_corners[:1]]), axis=0)
    np.testing.assert_allclose(edges @ view.principal_ray, 0.0, atol=1e-6)
    np.testing.assert_allclose(view.detector_size_mm, config.detector_size_mm)
    # the corners and the collimated field project back onto the image where they belong
    np.testing.assert_allclose(camera.project(view.detector_corners), [[0, 0], [SIZE, 0], [SIZE, SIZE], [0, SIZE]],
                               atol=1e-6)
    np.testing.assert_allclose(camera.project(view.field_corners), [[16, 8], [48, 8], [48, 40], [16, 40]], atol=1e-6)
    # world_from_camera: a rigid transform whose origin is the source and whose z is the beam
    rotation = view.world_from_camera[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(view.world_from_camera[:3, 3], view.source, atol=1e-6)
    np.testing.assert_allclose(rotation[:, 2], view.principal_ray, atol=1e-9)
    assert (view.alpha_deg, view.beta_deg, view.moving) == (20.0, -15.0, False)


def test_open_collimator_field_is_the_detector_and_bad_states_are_refused():
    _, msg = state_msg()
    view = lv.carm_view(msg)
    np.testing.assert_allclose(view.field_corners, view.detector_corners)
    msg.index_from_world = [0.0] * 12
    with pytest.raises(ValueError, match="index_from_world"):
        lv.carm_view(msg)
    _, msg = state_msg()
    msg.sensor_width_px = 0
    with pytest.raises(ValueError, match="sensor"):
        lv.camera_from_state_msg(msg)


def test_same_view_compares_projections():
    _, a = state_msg()
    _, b = state_msg()
    _, moved = state_msg(alpha=25.0)
    assert lv.same_view(a, b)
    b.index_from_world = [2.5 * v for v in b.index_from_world]   # the same projection, scaled
    assert lv.same_view(a, b)
    assert not lv.same_view(a, moved)
    moved.index_from_world = [0.0] * 12
    assert not lv.same_view(a, moved)


def test_carm_primitives_put_the_source_at_the_camera_centre_and_the_ray_on_the_detector():
    state, msg = state_msg(collimation=Collimation.rectangle(16, 8, 48, 40))
    view = lv.carm_view(msg)
    scale = 0.001
    parts = lv.carm_primitives(view, scale)
    by_kind = {}
    for part in parts:
        by_kind.setdefault(part.kind, []).append(part)
    source = by_kind["sphere"][0]
    np.testing.assert_allclose(source.position, state.camera().source_world * scale, atol=1e-9)
    np.testing.assert_allclose(by_kind["sphere"][1].position, np.asarray(state.pose.isocenter_mm) * scale)
    (detector,) = by_kind["cube"]
    width_mm, height_mm = state.config.detector_size_mm
    assert detector.size == pytest.approx((width_mm * scale, height_mm * scale, lv.DETECTOR_THICKNESS_MM * scale))
    # the box lies just behind the image plane, centred on the panel, turned with the camera
    behind = (detector.position / scale - view.source) @ view.principal_ray
    assert behind == pytest.approx(view.source_to_detector_mm + lv.DETECTOR_THICKNESS_MM / 2)
    np.testing.assert_allclose(detector.rotation, view.world_from_camera[:3, :3])
    (arrow,) = by_kind["arrow"]
    np.testing.assert_allclose(arrow.position, source.position)
    np.testing.assert_allclose(arrow.rotation @ [1, 0, 0], view.principal_ray, atol=1e-12)
    assert (arrow.size[0] + arrow.size[2]) / scale == pytest.approx(state.config.source_to_detector_distance_mm)
    beam, field_outline = by_kind["line_list"][0], by_kind["line_strip"][0]
    np.testing.assert_allclose(beam.points[0::2], np.repeat([view.source * scale], 4, axis=0), atol=1e-9)
    np.testing.assert_allclose(beam.points[1::2], view.field_corners * scale)
    np.testing.assert_allclose(state.camera().project(field_outline.points[:4] / scale),
                               [[16, 8], [48, 8], [48, 40], [16, 40]], atol=1e-6)
    assert "alpha 20.0 deg, beta -15.0 deg" in by_kind["text"][0].text
    target = lv.carm_primitives(view, scale, target=True)
    assert {p.kind for p in target} == {"sphere", "cube", "line_list", "line_strip", "text"}
    assert all(p.color == lv.TARGET_COLOUR for p in target if p.kind != "text")
    assert target[-1].text.startswith("target:")


def test_patient_primitives_are_the_ct_box(default_patient):
    corners = default_patient.corners_world()
    wire, label = lv.patient_primitives(corners, 0.001, "patient CT default")
    assert wire.kind == "line_list" and len(wire.points) == 24
    np.testing.assert_allclose(np.unique(np.round(wire.points / 0.001, 6), axis=0),
                               np.unique(np.round(corners, 6), axis=0))
    assert label.text == "patient CT default" and label.position[2] == pytest.approx(corners[:, 2].max() * 0.001)


def test_scene_entities_and_transforms_encode():
    state, msg = state_msg(collimation=Collimation.rectangle(16, 8, 48, 40))
    view = lv.carm_view(msg)
    stamp = msg.header.stamp
    for message in (lv.carm_entity(view, stamp, "world", 0.001),
                    lv.carm_entity(view, stamp, "world", 0.001, "carm_target", target=True),
                    lv.transform_message(view.world_from_camera, stamp, "world", "carm_camera", 0.001),
                    lv.calibration_message(state.camera(), stamp, "carm_camera", (SIZE, SIZE)),
                    lv.segmentation_message(lv.mask_boundary_segments(np.eye(8, dtype=bool)), stamp, "spine: found"),
                    lv.log_message("warning", "a line", "planner_node", stamp)):
        assert isinstance(message.encode(), bytes) and message.encode()
    assert lv.segmentation_message(None, stamp).encode() == b""  # clears the outline: an empty message


def test_rotations_for_arrows_and_quaternions():
    for direction in ([1, 0, 0], [0, 0, -1], [0.3, -0.9, 0.2], [0, 1, 1e-9]):
        d = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
        rotation = lv.rotation_x_to(d)
        np.testing.assert_allclose(rotation @ [1, 0, 0], d, atol=1e-12)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
    assert lv.quaternion_from_matrix(np.eye(3)) == pytest.approx((0, 0, 0, 1))
    x, y, z, w = lv.quaternion_from_matrix(np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]))  # 90 deg about z
    assert (x, y) == pytest.approx((0, 0)) and z == pytest.approx(math.sqrt(0.5)) and w == pytest.approx(math.sqrt(0.5))


def test_patient_box_is_the_twin_ct_read_from_its_header(default_patient):
    corners = lv.ct_corners_world(lv.twin_ct_path())
    np.testing.assert_allclose(corners, default_patient.corners_world(), atol=1e-6)
    edges = lv.box_edges(corners).reshape(12, 2, 3)
    lengths = sorted(np.linalg.norm(edges[:, 1] - edges[:, 0], axis=1))
    extent = sorted(np.asarray(default_patient.shape) * default_patient.spacing_mm)
    np.testing.assert_allclose(lengths, np.repeat(extent, 4), rtol=1e-9)
    assert lv.twin_ct_path("/data/p7") == Path("/data/p7/ct.nii.gz")
    assert lv.twin_ct_path("/data/p7", "/x/ct.nii") == Path("/x/ct.nii")
    with pytest.raises(ValueError):
        lv.box_edges(np.zeros((4, 3)))


# ---- log ---------------------------------------------------------------------------------------
def test_log_lines_for_heard_intents_and_events():
    assert lv.heard_log("show me the heart") == ("info", "heard: show me the heart")
    intent = Intent(kind="show", structure="left lung", view="ap", amount=math.nan, confidence=0.92,
                    source_text="show me the left lung", source="speech")
    level, text = lv.intent_log(intent)
    assert level == "info" and "intent show" in text and "'left lung'" in text and "0.92" in text and "speech" in text
    level, text = lv.intent_log(Intent(kind="not_understood", amount=math.nan, confidence=0.2, source_text="blorp",
                                       candidates=["show", "stop"], error="no verb"))
    assert level == "warning" and "no verb" in text and "did you mean: show, stop" in text
    done = PlanEvent(kind="show", structure="heart", view="lateral", success=True, message="centred",
                     centring_error_px=3.25, coverage=0.97, collimated_area_fraction=-1.0, acquisitions=2,
                     wall_time_s=12.5)
    level, text = lv.event_log(done)
    assert level == "info" and "done in 12.5 s" in text and "centring 3.2 px" in text and "2 acquisitions" in text
    assert "field" not in text  # -1 = not measured
    failed = PlanEvent(kind="move", success=False, failure_reason="timeout", message="no frame", wall_time_s=10.0)
    assert lv.event_log(failed)[0] == "error" and "failed (timeout)" in lv.event_log(failed)[1]
    refused = PlanEvent(kind="rotate", success=False, failure_reason="refused", message="low confidence")
    assert lv.event_log(refused)[0] == "warning"


def test_plan_events_become_plain_json():
    state, msg = state_msg()
    event = PlanEvent(kind="show", structure="heart", success=True, coverage=math.nan, final_state=msg)
    as_dict = lv.message_to_dict(event)
    text = json.dumps(as_dict, allow_nan=False)
    assert as_dict["coverage"] is None and as_dict["structure"] == "heart"
    assert len(as_dict["final_state"]["index_from_world"]) == 12
    assert as_dict["final_state"]["header"]["stamp"] == {"sec": 12, "nanosec": 345}
    assert json.loads(text)["final_state"]["alpha_deg"] == 20.0


# ---- layout and wiring --------------------------------------------------------------------------
def test_the_shipped_layout_is_the_generated_one_and_names_our_channels():
    shipped = (REPO_ROOT / "config" / "foxglove_layout.json").read_text()
    assert shipped == lv.layout_json(), "regenerate with: fluorosam view --write-layout config/foxglove_layout.json"
    layout = json.loads(shipped)
    panels = layout["configById"]
    assert {p.split("!")[0] for p in panels} == {"Image", "3D", "RosOut", "RawMessages"}
    image = panels["Image!carm"]["imageMode"]
    assert image["imageTopic"] == lv.IMAGE_CHANNEL
    assert set(image["annotations"]) == {lv.COLLIMATOR_CHANNEL, lv.SEGMENTATION_CHANNEL}
    assert lv.SCENE_CHANNEL in panels["3D!scene"]["topics"]
    assert panels["RosOut!events"]["topicToRender"] == lv.LOG_CHANNEL
    assert panels["RawMessages!plan"]["topicPath"] == lv.EVENTS_CHANNEL

    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(layout["layout"])) == sorted(panels)


def test_launch_file_executable_and_install_list():
    (spec,) = load_launch_file(REPO_ROOT / "launch" / "live_view.launch.yaml", {"port": "9123"})
    assert spec.command[:3] == [sys.executable, "-m", "fluorosam_ros.nodes.live_view"]
    assert "port:=9123" in spec.command and "host:=127.0.0.1" in spec.command
    files = [Path(spec.command[i + 1]).name for i, token in enumerate(spec.command) if token == "--params-file"]
    assert files == ["live_view.yaml", "twin.yaml"]
    assert NODE_MODULES["live_view"] == "fluorosam_ros.nodes.live_view"
    executable = REPO_ROOT / "ros_exec" / "live_view"
    assert executable.stat().st_mode & stat.S_IXUSR and "fluorosam_ros.nodes.live_view" in executable.read_text()
    assert "ros_exec/live_view" in (REPO_ROOT / "CMakeLists.txt").read_text()


def test_cli_writes_the_layout(tmp_path):
    from fluorosam_ros.cli import main

    assert main(["view", "--write-layout", str(tmp_path / "layout.json")]) == 0
    assert (tmp_path / "layout.json").read_text() == lv.layout_json()


# ---- the node, live ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int, timeout_s: float) -> FoxgloveClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return FoxgloveClient("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


EXPECTED_SCHEMAS = {
    lv.IMAGE_CHANNEL: "foxglove.CompressedImage",
    lv.COLLIMATOR_CHANNEL: "foxglove.ImageAnnotations",
    lv.SEGMENTATION_CHANNEL: "foxglove.ImageAnnotations",
    lv.CALIBRATION_CHANNEL: "foxglove.CameraCalibration",
    lv.SCENE_CHANNEL: "foxglove.SceneUpdate",
    lv.TF_CHANNEL: "foxglove.FrameTransforms",
    lv.LOG_CHANNEL: "foxglove.Log",
    lv.EVENTS_CHANNEL: "fluorosam_ros/msg/PlanEvent",
}


@pytest.mark.ros
@pytest.mark.timeout(150)
def test_live_view_streams_the_running_system_to_a_foxglove_client(tmp_path):
    import rclpy
    from rclpy.node import Node
    from ros_harness import launched, read_logs
    from sensor_msgs.msg import RegionOfInterest
    from std_msgs.msg import String

    from fluorosam_ros.msg import Segmentation
    from fluorosam_ros.nodes.common import RELIABLE_QOS
    from fluorosam_ros.nodes.conversions import image_to_msg

    port = _free_port()
    log_dir = tmp_path / "logs"
    with launched("carm_sim.launch.yaml", log_dir, image_size_px=SIZE) as carm, \
            launched("live_view.launch.yaml", log_dir, port=port) as view:
        client = _connect(port, 30)
        rclpy.init()
        node = Node("test_live_view_peer")
        try:
            assert client.subprotocol.startswith("foxglove.")
            assert client.wait_for(lambda: set(EXPECTED_SCHEMAS) <= set(client.topics()), 30), read_logs(log_dir)
            assert client.server_info["name"] == "fluorosam_ros"
            assert {t: c["schemaName"] for t, c in client.topics().items()} == EXPECTED_SCHEMAS
            subscriptions = {topic: client.subscribe(topic) for topic in EXPECTED_SCHEMAS}

            # carm_sim's first frame and its state arrive (sent again on subscription and each second)
            wanted = (lv.IMAGE_CHANNEL, lv.COLLIMATOR_CHANNEL, lv.CALIBRATION_CHANNEL, lv.SCENE_CHANNEL, lv.TF_CHANNEL)
            assert client.wait_for(lambda: all(client.received(subscriptions[t]) for t in wanted), 60), \
                f"got {[t for t in wanted if client.received(subscriptions[t])]}\n" + read_logs(log_dir)
            frame = client.received(subscriptions[lv.IMAGE_CHANNEL])[-1].payload
            assert png_size(frame) == (SIZE, SIZE)
            assert b"carm_camera" in client.received(subscriptions[lv.TF_CHANNEL])[-1].payload
            scene = client.received(subscriptions[lv.SCENE_CHANNEL])[-1].payload
            assert b"carm" in scene and b"patient" in scene and b"alpha" in scene

            # the log and the raw events, from messages this process publishes
            heard = node.create_publisher(String, "/command/heard", RELIABLE_QOS)
            intents = node.create_publisher(Intent, "/command/intent", RELIABLE_QOS)
            events = node.create_publisher(PlanEvent, "/plan/events", RELIABLE_QOS)
            results = node.create_publisher(Segmentation, "/segmentation/result", RELIABLE_QOS)
            deadline = time.monotonic() + 20
            publishers = (heard, intents, events, results)
            while any(p.get_subscription_count() == 0 for p in publishers) and time.monotonic() < deadline:
                time.sleep(0.1)
            heard.publish(String(data="show me the heart"))
            intents.publish(Intent(kind="show", structure="heart", amount=math.nan, confidence=0.9,
                                   source_text="show me the heart", source="text"))
            events.publish(PlanEvent(kind="show", structure="heart", success=False, failure_reason="not_found",
                                     message="'heart' is not in the image", wall_time_s=1.5))
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            mask[20:40, 10:30] = 255
            result = Segmentation(prompt="heart", found=True, iou_scores=[0.8, 0.5, 0.4], absent_score=0.1,
                                  mask=image_to_msg(mask, "mono8", Header()),
                                  box=RegionOfInterest(x_offset=10, y_offset=20, width=20, height=20))
            results.publish(result)

            def logged() -> bytes:
                return b"".join(m.payload for m in client.received(subscriptions[lv.LOG_CHANNEL]))

            assert client.wait_for(lambda: b"heard: show me the heart" in logged() and b"intent show" in logged()
                                   and b"failed (not_found)" in logged(), 20), logged()
            assert client.wait_for(lambda: client.received(subscriptions[lv.EVENTS_CHANNEL]), 10)
            event = json.loads(client.received(subscriptions[lv.EVENTS_CHANNEL])[-1].payload)
            assert event["failure_reason"] == "not_found" and event["structure"] == "heart"
            assert client.wait_for(lambda: any(b"heart: found (IoU 0.80)" in m.payload
                                               for m in client.received(subscriptions[lv.SEGMENTATION_CHANNEL])), 10)
        finally:
            client.close()
            node.destroy_node()
            rclpy.try_shutdown()
        alive = {name: p.poll() is None for name, p in {**carm.processes, **view.processes}.items()}
        assert all(alive.values()), f"{alive}\n" + read_logs(log_dir)
    text = (log_dir / "live_view.log").read_text()
    assert f"ws://127.0.0.1:{port}" in text and "streaming frames" in text
    assert "live view stopped: streamed" in text
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST"
