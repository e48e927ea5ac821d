"""carm_sim, segmentation_node and planner_node as separate processes; /plan/view and
/command/intent driven from this process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from ros_harness import launched, read_logs

from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.nodes.commander import CArmCommander
from fluorosam_ros.nodes.common import STATE_QOS

pytestmark = [pytest.mark.ros, pytest.mark.timeout(600)]
SIZE = 256  # the bundled model's input size


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("planner_logs")
    with launched("carm_sim.launch.yaml", log_dir, image_size_px=SIZE, time_scale="10.0") as carm, \
            launched("segmentation.launch.yaml", log_dir, device="cpu") as segmentation, \
            launched("planner.launch.yaml", log_dir) as planner:
        rclpy.init()
        commander = CArmCommander("test_planner_client")
        targets: dict[str, list] = {"state": [], "pose": []}
        commander.create_subscription(CArmStateMsg, "/plan/target_state", targets["state"].append, STATE_QOS)
        commander.create_subscription(PoseStamped, "/plan/target_pose", targets["pose"].append, STATE_QOS)
        try:
            if not commander.wait_until_ready(timeout_s=120) or commander.wait_for_frame(timeout_s=60) is None:
                pytest.fail("carm_sim did not come up:\n" + read_logs(log_dir))
            if not commander.view_client.wait_for_server(timeout_sec=180):
                pytest.fail("planner_node did not come up:\n" + read_logs(log_dir))
            if not commander.segment_client.wait_for_service(timeout_sec=180):
                pytest.fail("segmentation_node did not come up:\n" + read_logs(log_dir))
            yield commander, targets, log_dir
        finally:
            commander.close()
            rclpy.try_shutdown()
        processes = {**carm.processes, **segmentation.processes, **planner.processes}
        assert all(p.poll() is None for p in processes.values()), "a node died during the tests:\n" + read_logs(log_dir)


def _intent(commander: CArmCommander, kind: str, confidence: float = 1.0, timeout_s: float = 120.0, **slots):
    before = len(commander.events)
    msg = IntentMsg(kind=kind, confidence=confidence, amount=slots.pop("amount", math.nan),
                    source_text=slots.pop("text", kind), source="text", **slots)
    commander.intent_pub.publish(msg)
    return commander.wait_for_event(before, timeout_s)


def _settled_state(commander: CArmCommander) -> CArmStateMsg:
    commander._spin_until(lambda: commander.state is not None and not commander.state.moving, 30.0)
    commander.spin_for(0.3)
    return commander.state


def test_a_view_alone_before_any_structure_asks_for_one(system):
    """Runs first: nothing has been shown, so "lateral please" has no target to keep."""
    commander, _, _ = system
    start = _settled_state(commander)
    event = _intent(commander, "show", view="lateral", text="lateral please")
    assert event is not None and not event.success and event.failure_reason == "no_target", event
    assert np.allclose(_settled_state(commander).isocenter_mm, start.isocenter_mm)


def test_plan_view_shows_the_structure_collimated(system):
    commander, targets, log_dir = system
    result, stages = commander.show("liver", "ap")
    assert result is not None, read_logs(log_dir)
    assert result.success, f"{result.failure_reason}: {result.message}\n" + read_logs(log_dir)
    assert result.coverage >= 0.95
    assert result.centring_error_px <= 0.1 * SIZE
    assert result.final_state.collimation.enabled and 0 < result.collimated_area_fraction < 1
    assert result.acquisitions >= 1
    for stage in ("segment", "localise", "plan", "move"):
        assert stage in stages
    state = _settled_state(commander)
    assert np.allclose(state.isocenter_mm, result.final_state.isocenter_mm, atol=1e-3)
    assert state.min_alpha_deg <= state.alpha_deg <= state.max_alpha_deg
    # integrators get the same target on plain topics
    commander.spin_for(0.5)
    assert targets["state"] and np.allclose(targets["state"][-1].isocenter_mm, result.final_state.isocenter_mm)
    assert targets["pose"] and targets["pose"][-1].header.frame_id == "world"
    position = targets["pose"][-1].pose.position
    assert np.allclose([position.x, position.y, position.z], result.final_state.source_mm, atol=1e-3)


def test_a_view_alone_turns_to_the_structure_shown_last(system):
    """After the liver AP above, "LAO 30" (a view and its angle, no structure) shows the liver
    in a 30 degree left oblique."""
    commander, _, log_dir = system
    before = _settled_state(commander)
    event = _intent(commander, "show", view="oblique_left", amount=30.0, unit="deg", text="LAO 30")
    assert event is not None and event.success, (event and event.message) + read_logs(log_dir)
    after = _settled_state(commander)
    turned = max(abs(after.alpha_deg - before.alpha_deg), abs(after.beta_deg - before.beta_deg))
    assert 20.0 <= turned <= 40.0, (before.alpha_deg, before.beta_deg, after.alpha_deg, after.beta_deg)


@pytest.mark.parametrize("structure, reason", [("nonsense organ", "unknown_structure"),
                                               ("femur_left", "not_in_twin")])
def test_requests_it_cannot_serve_fail_with_a_reason(system, structure, reason):
    commander, _, log_dir = system
    before = _settled_state(commander)
    result, _ = commander.show(structure, "ap")
    assert result is not None, read_logs(log_dir)
    assert not result.success and result.failure_reason == reason, result.message
    after = _settled_state(commander)
    assert np.allclose(before.isocenter_mm, after.isocenter_mm)  # nothing moved


def test_relative_move_and_undo(system):
    commander, _, log_dir = system
    start = _settled_state(commander)
    event = _intent(commander, "move", direction="left", amount=20.0, unit="mm")
    assert event is not None and event.success, event and event.message
    moved = _settled_state(commander)
    assert np.linalg.norm(np.subtract(moved.isocenter_mm, start.isocenter_mm)) == pytest.approx(20.0, abs=0.5)
    event = _intent(commander, "undo")
    assert event is not None and event.success, event and event.message
    back = _settled_state(commander)
    assert np.allclose(back.isocenter_mm, start.isocenter_mm, atol=1e-3)


def test_low_confidence_and_not_understood_move_nothing(system):
    commander, _, _ = system
    start = _settled_state(commander)
    event = _intent(commander, "move", confidence=0.3, direction="left", amount=50.0, unit="mm")
    assert event is not None and not event.success and event.failure_reason == "refused"
    event = _intent(commander, "not_understood", confidence=0.0, text="make me a sandwich")
    assert event is not None and not event.success and event.failure_reason == "not_understood"
    commander.spin_for(1.0)
    assert np.allclose(_settled_state(commander).isocenter_mm, start.isocenter_mm)


def test_stop_cancels_a_running_request(system):
    commander, _, log_dir = system
    before = len(commander.events)
    commander.intent_pub.publish(IntentMsg(kind="show", structure="liver", view="lateral", confidence=1.0,
                                           amount=math.nan, source_text="show the liver, lateral"))
    commander.spin_for(0.3)
    commander.intent_pub.publish(IntentMsg(kind="stop", confidence=1.0, amount=math.nan, source_text="stop"))
    commander._spin_until(lambda: len(commander.events) >= before + 2, 120.0)
    events = {e.kind: e for e in commander.events[before:]}
    assert "stop" in events and events["stop"].success, read_logs(log_dir)
    assert "show" in events and events["show"].failure_reason == "canceled", events.get("show")
    # the planner still serves requests afterwards
    event = _intent(commander, "acquire")
    assert event is not None and event.success, event and event.message
