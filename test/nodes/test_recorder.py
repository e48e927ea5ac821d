"""Recording to MCAP and replaying it: the schema builder alone, then carm_sim (a separate
process) recorded from this process, and the recording published again to a fresh subscriber."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fluorosam_ros.recording import (
    SEPARATOR,
    DefinitionNotFound,
    RecordingWriter,
    field_types,
    message_definition,
    msg_file,
    read_messages,
    topic_counts,
    topic_info,
)

pytestmark = [pytest.mark.timeout(240)]
SIZE = 64
ACQUISITIONS = 2  # /carm/acquire calls; one move with acquire=True follows
FRAMES = ACQUISITIONS + 1
CARM_TOPICS = ("/carm/image", "/carm/image_state", "/carm/state")


# ---- the schema text, without ROS processes ------------------------------------------------
def test_carm_state_definition_carries_every_dependency_once():
    text = message_definition("fluorosam_ros/msg/CArmState")
    own = msg_file("fluorosam_ros", "CArmState").read_text().rstrip()
    assert text.startswith(own + "\n" + SEPARATOR + "\nMSG: ")
    for dependency in ("fluorosam_ros/Collimation", "std_msgs/Header", "builtin_interfaces/Time"):
        assert text.count(f"{SEPARATOR}\nMSG: {dependency}\n") == 1, dependency
    assert len(SEPARATOR) == 80 and set(SEPARATOR) == {"="}
    # the same for the short and the full type name
    assert message_definition("fluorosam_ros/CArmState") == text


def test_nested_definitions_reach_the_leaves():
    text = message_definition("fluorosam_ros/msg/Segmentation")
    for dependency in ("sensor_msgs/Image", "sensor_msgs/RegionOfInterest", "fluorosam_ros/CArmState",
                       "fluorosam_ros/Collimation", "std_msgs/Header", "builtin_interfaces/Time"):
        assert f"MSG: {dependency}\n" in text, dependency


def test_field_types_understands_arrays_bounds_constants_and_comments():
    text = ("# a comment naming other/Type\n"
            "Foo[] foos\n"
            "string<=5 name\n"
            "other_pkg/Bar[<=3] bars  # trailing comment\n"
            "int32 LIMIT=1\n"
            "string HASH=\"#other/Thing\"\n"
            "float64[3] xyz\n"
            "other_pkg/Bar again\n"
            "pkg/msg/Baz full\n")
    assert field_types(text, "here") == ["here/Foo", "other_pkg/Bar", "pkg/Baz"]


def test_types_without_a_msg_definition_are_refused():
    with pytest.raises(DefinitionNotFound):
        message_definition("fluorosam_ros/action/MoveCArm_FeedbackMessage")
    with pytest.raises(DefinitionNotFound):
        message_definition("no_such_pkg/msg/Nothing")


def test_written_file_decodes_to_what_was_serialised(tmp_path):
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from fluorosam_ros.msg import CArmState

    path = tmp_path / "unit.mcap"
    writer = RecordingWriter(path)
    state_channel = writer.add_topic("/carm/state", "fluorosam_ros/msg/CArmState", {"durability": "transient_local"})
    image_channel = writer.add_topic("/carm/image", "sensor_msgs/msg/Image")
    state = CArmState(alpha_deg=12.5, sensor_width_px=7)
    state.collimation.enabled = True
    state.collimation.col_max_px = 3.0
    state.header.stamp.sec, state.header.frame_id = 42, "world"
    image = Image(height=2, width=3, encoding="mono16", step=6, data=bytes(range(12)))
    for i in range(3):
        assert writer.write(state_channel, serialize_message(state), 1_000 + i)
    assert writer.write(image_channel, serialize_message(image), 2_000)
    assert writer.close() == {"/carm/state": 3, "/carm/image": 1}
    assert not writer.write(image_channel, serialize_message(image), 3_000)  # closed: dropped

    assert topic_counts(path) == {"/carm/state": 3, "/carm/image": 1}
    info = topic_info(path)
    assert info["/carm/state"].type_name == "fluorosam_ros/msg/CArmState"
    assert info["/carm/state"].offered_qos()[1] == "transient_local"
    messages = list(read_messages(path))
    assert [(topic, log_time) for topic, _, log_time in messages] == \
        [("/carm/state", 1_000), ("/carm/state", 1_001), ("/carm/state", 1_002), ("/carm/image", 2_000)]
    decoded_state, decoded_image = messages[0][1], messages[-1][1]
    assert decoded_state.alpha_deg == 12.5 and decoded_state.sensor_width_px == 7
    assert decoded_state.collimation.enabled and decoded_state.collimation.col_max_px == 3.0
    assert decoded_state.header.stamp.sec == 42 and decoded_state.header.frame_id == "world"
    assert (decoded_image.width, decoded_image.height, decoded_image.encoding) == (3, 2, "mono16")
    assert bytes(decoded_image.data) == bytes(range(12))


def test_a_recording_cut_short_still_reads(tmp_path):
    """A recorder killed without close() leaves no summary and a cut-off end: complete chunks read."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    path = tmp_path / "whole.mcap"
    writer = RecordingWriter(path, chunk_size=256)
    channel = writer.add_topic("/chatter", "std_msgs/msg/String")
    for i in range(200):
        writer.write(channel, serialize_message(String(data=f"message {i:03d}")), 1_000 + i)
    writer.close()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    count = topic_counts(cut)["/chatter"]
    assert 50 < count < 200
    texts = [msg.data for _, msg, _ in read_messages(cut)]
    assert texts == [f"message {i:03d}" for i in range(count)]


# ---- carm_sim recorded, then replayed ------------------------------------------------------
class _Spinner:
    """Spin a node on a MultiThreadedExecutor in a background thread (as a real node would be)."""

    def __init__(self, node) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown(timeout_sec=1.0)


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    import rclpy
    from ros_harness import launched, read_logs

    from fluorosam_ros.geometry.carm import CArmPose
    from fluorosam_ros.nodes.commander import CArmCommander
    from fluorosam_ros.nodes.recorder import TopicRecorder

    log_dir = tmp_path_factory.mktemp("recorder_logs")
    path = tmp_path_factory.mktemp("recording") / "carm.mcap"
    rclpy.init()
    try:
        with launched("carm_sim.launch.yaml", log_dir, image_size_px=SIZE, time_scale=10.0) as carm:
            commander = CArmCommander("test_recorder_client")
            recorder = spinner = None
            try:
                if not commander.wait_until_ready(timeout_s=120):
                    pytest.fail("carm_sim did not come up:\n" + read_logs(log_dir))
                recorder = TopicRecorder(path, node_name="test_recorder")
                spinner = _Spinner(recorder)
                assert _wait(lambda: all(recorder.publisher_count(t) > 0 for t in CARM_TOPICS), 15), \
                    f"recorder did not match carm_sim's publishers: {recorder.recorded_topics}"
                time.sleep(0.5)  # matching is seen on both sides at slightly different times
                for _ in range(ACQUISITIONS):
                    ok, message = commander.acquire()
                    assert ok, message
                iso = tuple(float(v) for v in commander.state.isocenter_mm)
                outcome = commander.move_to(CArmPose(iso, 10.0, 0.0), acquire=True)
                assert outcome.succeeded, outcome.message
                assert _wait(lambda: recorder.counts.get("/carm/image", 0) >= FRAMES, 5), recorder.counts
                time.sleep(0.3)
            finally:
                if spinner is not None:
                    spinner.stop()
                counts = recorder.close() if recorder is not None else {}
                if recorder is not None:
                    recorder.destroy_node()
                commander.close()
            assert all(p.poll() is None for p in carm.processes.values()), \
                "carm_sim died during the recording:\n" + read_logs(log_dir)
        # carm_sim has stopped here: whatever arrives on its topics now comes from the replayer
        yield path, counts
    finally:
        rclpy.try_shutdown()


@pytest.mark.ros
def test_recording_holds_the_carm_topics_with_their_counts(recorded):
    path, counts_at_close = recorded
    counts = topic_counts(path)
    assert counts == counts_at_close  # the summary's statistics agree with what was written
    assert counts["/carm/image"] >= FRAMES
    assert counts["/carm/image_state"] >= FRAMES
    assert counts["/carm/state"] >= 1  # latched: recorded even between its 10 Hz updates
    assert counts.get("/carm/camera_info", 0) >= FRAMES
    info = topic_info(path)
    assert info["/carm/image"].type_name == "sensor_msgs/msg/Image"
    assert info["/carm/image"].offered_qos()[:2] == ("best_effort", "volatile")
    assert info["/carm/state"].offered_qos()[:2] == ("reliable", "transient_local")


@pytest.mark.ros
def test_recorded_images_decode_and_pair_with_their_states(recorded):
    path, _ = recorded
    images, image_states, states = [], {}, []
    for topic, msg, _log_time in read_messages(path, CARM_TOPICS):
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if topic == "/carm/image":
            images.append((stamp, msg))
        elif topic == "/carm/image_state":
            image_states[stamp] = msg
        else:
            states.append(msg)
    stamp, image = images[0]
    assert (image.width, image.height, image.encoding) == (SIZE, SIZE, "mono16")
    assert len(image.data) == image.step * image.height == SIZE * SIZE * 2
    pixels = np.frombuffer(bytes(image.data), dtype="<u2")
    assert pixels.max() > 0
    # each image's geometry travels on /carm/image_state with the same stamp
    assert {s for s, _ in images} <= set(image_states)
    assert image_states[images[-1][0]].alpha_deg == pytest.approx(10.0)  # the frame taken after the move
    assert states[0].sensor_width_px == SIZE


@pytest.mark.ros
def test_replay_publishes_every_recorded_image_unchanged(recorded):
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from fluorosam_ros.msg import CArmState
    from fluorosam_ros.nodes.common import STATE_QOS
    from fluorosam_ros.nodes.replayer import Replayer

    path, counts = recorded
    expected = [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m, _ in read_messages(path, ["/carm/image"])]
    listener = rclpy.create_node("test_replay_listener")
    received: list[tuple[int, int]] = []
    states: list[CArmState] = []
    deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)
    listener.create_subscription(Image, "/carm/image",
                                 lambda m: received.append((m.header.stamp.sec, m.header.stamp.nanosec)), deep)
    replayer = Replayer(path, rate=4.0, topics=list(CARM_TOPICS), node_name="test_replayer")
    spinner = _Spinner(listener)
    try:
        assert replayer.wait_for_subscribers(["/carm/image"], timeout_s=15), "listener never matched"
        time.sleep(0.5)
        published = replayer.play()
        assert published == sum(counts[t] for t in CARM_TOPICS)
        assert replayer.published["/carm/image"] == counts["/carm/image"]
        assert _wait(lambda: len(received) >= len(expected), 5)
        assert received == expected  # every frame, in order, with its recorded stamp
        # /carm/state is latched again: a subscriber that comes after the replay still gets the last one
        listener.create_subscription(CArmState, "/carm/state", states.append, STATE_QOS)
        assert _wait(lambda: len(states) >= 1, 10)
        assert states[-1].sensor_width_px == SIZE
    finally:
        spinner.stop()
        replayer.destroy_node()
        listener.destroy_node()


@pytest.mark.ros
def test_cli_records_what_the_cli_replays(recorded, tmp_path):
    import subprocess
    import sys

    path, counts = recorded
    out = tmp_path / "again.mcap"
    cli = [sys.executable, "-m", "fluorosam_ros.cli"]
    record = subprocess.Popen(cli + ["record", "--out", str(out), "--topics", "/carm/image_state", "/carm/image",
                                     "--duration", "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        replay = subprocess.run(cli + ["replay", str(path), "--rate", "5", "--delay", "3",
                                       "--topics", "/carm/image_state", "/carm/image", "/carm/state"],
                                capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert f"published {sum(counts[t] for t in CARM_TOPICS)} messages" in replay.stdout, replay.stdout
        record_output, _ = record.communicate(timeout=60)
    finally:
        if record.poll() is None:
            record.kill()
    assert record.returncode == 0, record_output
    again = topic_counts(out)
    assert set(again) == {"/carm/image_state", "/carm/image"}, record_output
    assert again["/carm/image_state"] == counts["/carm/image_state"], record_output  # reliable: none lost
    assert again["/carm/image"] >= 1


@pytest.mark.ros
def test_a_later_best_effort_publisher_is_recorded_too(tmp_path):
    """Subscribed reliable (the only publisher was), the recorder weakens its subscription when a
    best-effort publisher appears, instead of never matching it."""
    import rclpy
    from std_msgs.msg import String

    from fluorosam_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS
    from fluorosam_ros.nodes.recorder import TopicRecorder

    started_here = not rclpy.ok()
    if started_here:
        rclpy.init()
    talker = rclpy.create_node("test_recorder_talker")
    recorder = TopicRecorder(tmp_path / "mixed.mcap", topics=["/test_recorder/mixed"], discovery_period_s=0.1,
                             node_name="test_mixed_recorder")
    spinner = None
    try:
        reliable_pub = talker.create_publisher(String, "/test_recorder/mixed", RELIABLE_QOS)
        spinner = _Spinner(recorder)
        assert _wait(lambda: recorder.publisher_count("/test_recorder/mixed") == 1, 10)
        time.sleep(0.3)
        reliable_pub.publish(String(data="reliable"))
        assert _wait(lambda: recorder.counts.get("/test_recorder/mixed") == 1, 5)
        best_effort_pub = talker.create_publisher(String, "/test_recorder/mixed", SENSOR_QOS)
        assert _wait(lambda: recorder.publisher_count("/test_recorder/mixed") == 2, 10)
        time.sleep(0.3)
        best_effort_pub.publish(String(data="best effort"))
        assert _wait(lambda: recorder.counts.get("/test_recorder/mixed") == 2, 5), recorder.counts
    finally:
        if spinner is not None:
            spinner.stop()
        recorder.close()
        recorder.destroy_node()
        talker.destroy_node()
        if started_here:
            rclpy.try_shutdown()
    assert [m.data for _, m, _ in read_messages(tmp_path / "mixed.mcap")] == ["reliable", "best effort"]
