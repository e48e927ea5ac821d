"""carm_sim as a separate process, driven through /carm/move from this (client) process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rclpy
from ros_harness import launched, read_logs

from fluorosam_ros.geometry.camera import CameraProjection
from fluorosam_ros.geometry.carm import CArmPose
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.nodes.commander import CArmCommander

pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]
SIZE = 128


@pytest.fixture(scope="module")
def carm(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("carm_sim_logs")
    with launched("carm_sim.launch.yaml", log_dir, image_size_px=SIZE, time_scale=10.0) as launcher:
        rclpy.init()
        commander = CArmCommander("test_carm_client")
        try:
            if not commander.wait_until_ready(timeout_s=120):
                pytest.fail("carm_sim did not come up:\n" + read_logs(log_dir))
            yield commander, launcher, log_dir
        finally:
            commander.close()
            rclpy.try_shutdown()
        assert all(code is None for code in (p.poll() for p in launcher.processes.values())), \
            "carm_sim died during the tests:\n" + read_logs(log_dir)


def centre(commander) -> tuple[float, float, float]:
    return tuple(float(v) for v in commander.state.isocenter_mm)


def test_accepted_goal_moves_and_acquires_a_frame(carm):
    commander, _, _ = carm
    target = CArmPose(centre(commander), 25.0, -10.0)
    collimation = Collimation.rectangle(20, 30, 100, 110)
    outcome = commander.move_to(target, collimation, acquire=True)
    assert outcome.succeeded, outcome.message
    assert outcome.feedback_count >= 2
    final = outcome.final_state
    assert final.alpha_deg == pytest.approx(25.0) and final.beta_deg == pytest.approx(-10.0)
    assert final.collimation.enabled and final.collimation.col_max_px == pytest.approx(100)
    frame = commander.wait_for_frame(newer_than=outcome.started)
    # under load a frame asked for before this move (the fixture's fallback /carm/acquire) can
    # arrive stamped after `started`: the move's own frame is the next one
    for _ in range(3):
        if frame is None or (frame.state is not None and frame.state.alpha_deg == pytest.approx(25.0)):
            break
        frame = commander.wait_for_frame(newer_than=frame.stamp)
    assert frame is not None and frame.pixels.shape == (SIZE, SIZE) and frame.encoding == "mono16"
    assert frame.state is not None and frame.state.alpha_deg == pytest.approx(25.0)
    # shuttered area is black, the field is not
    assert frame.pixels[:25, :].max() == 0 and frame.pixels[40:100, 30:90].mean() > 1000
    # the state's projection matrix puts the isocenter at the detector centre
    camera = CameraProjection(np.reshape(final.index_from_world, (3, 4)), SIZE, SIZE,
                              final.source_to_detector_distance_mm)
    np.testing.assert_allclose(camera.project(np.asarray(final.isocenter_mm))[0], [SIZE / 2, SIZE / 2], atol=1e-6)


@pytest.mark.parametrize("alpha, beta, isocenter_offset, reason", [
    (111.0, 0.0, 0.0, "alpha"),
    (0.0, -300.0, 0.0, "beta"),
    (0.0, 0.0, 5000.0, "isocenter"),
    (math.nan, 0.0, 0.0, "NaN"),
    (0.0, math.inf, 0.0, "NaN"),
])
def test_out_of_limit_and_non_finite_goals_are_rejected_without_moving(carm, alpha, beta, isocenter_offset, reason):
    commander, _, _ = carm
    commander.spin_for(0.3)  # let the last state of an earlier move arrive: `before` must be current
    before = commander.state
    iso = centre(commander)
    outcome = commander.move_to(CArmPose((iso[0], iso[1], iso[2] + isocenter_offset), alpha, beta), acquire=False)
    assert outcome.status_name == "rejected"
    assert reason in outcome.message
    assert (outcome.final_state.alpha_deg, outcome.final_state.beta_deg) == (before.alpha_deg, before.beta_deg)
    commander.spin_for(0.3)
    assert commander.state.alpha_deg == before.alpha_deg and commander.state.beta_deg == before.beta_deg


def test_collimation_outside_the_detector_is_rejected(carm):
    commander, _, _ = carm
    outcome = commander.move_to(CArmPose(centre(commander), 0.0, 0.0), Collimation.rectangle(-10, 0, 50, 50))
    assert outcome.status_name == "rejected"
    assert "outside the detector" in outcome.message


def test_a_move_can_be_canceled_and_the_arm_holds_its_pose(carm):
    commander, _, _ = carm
    commander.spin_for(0.3)  # the current state, not one from an earlier move
    start = commander.state.beta_deg
    # 200+ degrees at 30 deg/s x time_scale 10 takes about 0.7 s: cancel early in the move
    outcome = commander.move_to(CArmPose(centre(commander), 0.0, 220.0), acquire=False, cancel_after_s=0.1)
    assert outcome.status_name == "canceled"
    held = outcome.final_state.beta_deg
    assert start < held < 220.0
    commander.spin_for(0.5)
    assert commander.state.beta_deg == pytest.approx(held) and not commander.state.moving


def _move_with_intent_during(commander, target: CArmPose, kind: str):
    """Start a move, publish an intent of `kind` on /command/intent once it moves, return the result."""
    from fluorosam_ros.msg import Intent as IntentMsg
    from fluorosam_ros.nodes.common import RELIABLE_QOS

    publisher = commander.create_publisher(IntentMsg, "/command/intent", RELIABLE_QOS)
    try:
        # a message published before discovery matched carm_sim's subscription would be lost
        assert commander._spin_until(lambda: publisher.get_subscription_count() > 0, 10.0)
        feedback = []
        handle = commander._wait_future(commander.send_move(target, None, False, feedback.append), 10.0)
        assert handle is not None and handle.accepted
        result_future = handle.get_result_async()
        assert commander._spin_until(lambda: feedback or result_future.done(), 10.0)
        publisher.publish(IntentMsg(kind=kind, source="text", source_text=kind, confidence=1.0, amount=math.nan))
        wrapped = commander._wait_future(result_future, 30.0)
        assert wrapped is not None
        return wrapped.result
    finally:
        commander.destroy_publisher(publisher)


def test_a_stop_intent_halts_the_move_without_the_planner_and_only_that_move(carm):
    commander, _, _ = carm
    commander.spin_for(0.3)
    start = commander.state.beta_deg
    target = -200.0 if start > 0 else 200.0  # about 0.7 s at time_scale 10: the stop lands mid-move
    result = _move_with_intent_during(commander, CArmPose(centre(commander), 0.0, target), "stop")
    assert result.status == result.STATUS_CANCELED and "stopped" in result.message, result.message
    held = result.final_state.beta_deg
    assert min(start, target) < held < max(start, target)
    commander.spin_for(0.5)
    assert commander.state.beta_deg == pytest.approx(held) and not commander.state.moving
    # the stop belonged to that move: the next one runs to its end
    outcome = commander.move_to(CArmPose(centre(commander), 0.0, start), acquire=False)
    assert outcome.succeeded, outcome.message


def test_intents_other_than_stop_do_not_touch_the_move(carm):
    commander, _, _ = carm
    commander.spin_for(0.3)
    target = -200.0 if commander.state.beta_deg > 0 else 200.0  # long enough for the intent to land mid-move
    result = _move_with_intent_during(commander, CArmPose(centre(commander), 0.0, target), "show")
    assert result.status == result.STATUS_SUCCEEDED, result.message
    assert result.final_state.beta_deg == pytest.approx(target)


def test_acquire_service_publishes_a_fresh_frame(carm):
    commander, _, _ = carm
    before = commander.get_clock().now()
    ok, message = commander.acquire()
    assert ok, message
    assert commander.wait_for_frame(newer_than=before) is not None


def test_node_keeps_serving_after_bad_goals(carm):
    commander, launcher, log_dir = carm
    outcome = commander.move_to(CArmPose(centre(commander), 5.0, 5.0), acquire=False)
    assert outcome.succeeded, outcome.message
    assert launcher.processes["carm_sim"].poll() is None
    assert "move rejected" in read_logs(log_dir)  # the reasons were logged
