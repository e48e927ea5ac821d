"""Every message, service and action of the package works between two processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from fluorosam_ros.action import AcquireView
from fluorosam_ros.msg import AudioChunk, Intent, Segmentation, TrainingStatus
from fluorosam_ros.srv import Segment, TrainingControl

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
PEER = Path(__file__).resolve().parents[1] / "helpers" / "interface_peer.py"


@pytest.fixture(scope="module")
def node():
    peer = subprocess.Popen([sys.executable, str(PEER)], env=dict(os.environ))
    rclpy.init()
    node = Node("interface_test_client")
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        peer.send_signal(signal.SIGINT)
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            # the stand-in peer (not product code) once hung in rclpy's shutdown on a clean CI
            # run; the interfaces were already checked, so end it rather than fail the teardown
            peer.kill()
            peer.wait(10)


def spin_until(node, predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


def test_messages_arrive_intact(node):
    received = {}
    for msg_type, topic in [(Intent, "/test/intent"), (AudioChunk, "/test/audio"),
                            (Segmentation, "/test/segmentation"), (TrainingStatus, "/test/training")]:
        node.create_subscription(msg_type, topic, lambda m, t=topic: received.setdefault(t, m), LATCHED)
    assert spin_until(node, lambda: len(received) == 4), f"received only {sorted(received)}"
    intent = received["/test/intent"]
    assert (intent.kind, intent.structure, intent.view) == ("show", "femur_left", "lateral")
    assert list(intent.candidates) == ["femur_left", "hip_left"] and intent.confidence == pytest.approx(0.93)
    audio = received["/test/audio"]
    assert audio.sample_rate_hz == 16000 and list(audio.samples) == list(range(-5, 5)) and audio.end_of_utterance
    assert list(received["/test/segmentation"].iou_scores) == pytest.approx([0.9, 0.8, 0.7])
    assert received["/test/training"].step == 42


def test_services_round_trip(node):
    segment = node.create_client(Segment, "/test/segment")
    control = node.create_client(TrainingControl, "/test/training_control")
    assert segment.wait_for_service(timeout_sec=30) and control.wait_for_service(timeout_sec=30)
    future = segment.call_async(Segment.Request(use_latest=True, text="heart", points_xy=[1.0, 2.0, 3.0, 4.0],
                                                point_labels=[1, 0]))
    assert spin_until(node, future.done)
    assert future.result().success and future.result().message == "echo heart with 2 points"
    future = control.call_async(TrainingControl.Request(command=TrainingControl.Request.START))
    assert spin_until(node, future.done) and future.result().success


def test_acquire_view_action_round_trip(node):
    client = ActionClient(node, AcquireView, "/test/plan_view")
    assert client.wait_for_server(timeout_sec=30)
    feedback = []
    goal_future = client.send_goal_async(AcquireView.Goal(structure="vertebrae_L3", view="lateral"),
                                         feedback_callback=feedback.append)
    assert spin_until(node, goal_future.done) and goal_future.result().accepted
    result_future = goal_future.result().get_result_async()
    assert spin_until(node, result_future.done)
    result = result_future.result().result
    assert result.success and result.message == "vertebrae_L3 lateral" and result.coverage == pytest.approx(0.97)
    assert feedback and feedback[0].feedback.stage == "segment"
