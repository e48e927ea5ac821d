"""CArmCommander: a small synchronous facade over the C-arm's ROS interface, in the spirit of
nav2_simple_commander. Scripts, tests and the demo use it; so can an integrator's own code.

    commander = CArmCommander()
    commander.wait_until_ready()
    outcome = commander.move_to(CArmPose((0, 0, 0), 30, 0), acquire=True)
    frame = commander.wait_for_frame(newer_than=outcome.started)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from fluorosam_ros.action import AcquireView, MoveCArm
from fluorosam_ros.geometry.carm import CArmPose
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.msg import PlanEvent
from fluorosam_ros.srv import Segment

from .common import RELIABLE_QOS, SENSOR_QOS, STATE_QOS
from .conversions import collimation_to_msg, image_from_msg

STATUS_NAMES = {MoveCArm.Result.STATUS_SUCCEEDED: "succeeded", MoveCArm.Result.STATUS_REJECTED: "rejected",
                MoveCArm.Result.STATUS_CANCELED: "canceled", MoveCArm.Result.STATUS_FAILED: "failed"}


@dataclass
class MoveOutcome:
    accepted: bool
    status: int
    message: str
    final_state: CArmStateMsg | None
    started: Time
    feedback_count: int = 0

    @property
    def succeeded(self) -> bool:
        return self.accepted and self.status == MoveCArm.Result.STATUS_SUCCEEDED

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, "unknown") if self.accepted else "not accepted"


@dataclass
class CArmFrame:
    pixels: np.ndarray
    encoding: str
    state: CArmStateMsg | None
    stamp: Time


class CArmCommander(Node):
    def __init__(self, name: str = "carm_commander") -> None:
        super().__init__(name)
        self.move_client = ActionClient(self, MoveCArm, "/carm/move")
        self.acquire_client = self.create_client(Trigger, "/carm/acquire")
        self.segment_client = self.create_client(Segment, "/segment")
        self.view_client = ActionClient(self, AcquireView, "/plan/view")
        self.text_pub = self.create_publisher(String, "/command/text", RELIABLE_QOS)
        self.intent_pub = self.create_publisher(IntentMsg, "/command/intent", RELIABLE_QOS)
        self.events: list[PlanEvent] = []
        self.create_subscription(PlanEvent, "/plan/events", self.events.append, RELIABLE_QOS)
        self.state: CArmStateMsg | None = None
        self.frame: CArmFrame | None = None
        self._image_states: dict[tuple[int, int], CArmStateMsg] = {}
        self.create_subscription(CArmStateMsg, "/carm/state", self._on_state, STATE_QOS)
        self.create_subscription(CArmStateMsg, "/carm/image_state", self._on_image_state, RELIABLE_QOS)
        self.create_subscription(Image, "/carm/image", self._on_image, SENSOR_QOS)
        self.executor_ = SingleThreadedExecutor()
        self.executor_.add_node(self)

    # ---- subscriptions -------------------------------------------------------------------
    def _on_state(self, msg: CArmStateMsg) -> None:
        self.state = msg

    def _on_image_state(self, msg: CArmStateMsg) -> None:
        self._image_states[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
        if len(self._image_states) > 20:
            self._image_states.pop(next(iter(self._image_states)))

    def _on_image(self, msg: Image) -> None:
        try:
            pixels = image_from_msg(msg)
        except ValueError as error:
            self.get_logger().warning(f"ignoring a malformed image: {error}")
            return
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.frame = CArmFrame(pixels, msg.encoding, self._image_states.get(key), Time.from_msg(msg.header.stamp))

    # ---- spinning helpers ----------------------------------------------------------------
    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor_.spin_once(timeout_sec=min(0.05, max(deadline - time.monotonic(), 0)))

    def _spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor_.spin_once(timeout_sec=0.05)
        return predicate()

    def _wait_future(self, future, timeout_s: float):
        self.executor_.spin_until_future_complete(future, timeout_sec=timeout_s)
        return future.result() if future.done() else None

    # ---- API -----------------------------------------------------------------------------
    def wait_until_ready(self, timeout_s: float = 60.0) -> bool:
        """True once the move action is served and a state has arrived."""
        deadline = time.monotonic() + timeout_s
        if not self.move_client.wait_for_server(timeout_sec=timeout_s):
            return False
        return self._spin_until(lambda: self.state is not None, max(deadline - time.monotonic(), 0.1))

    def send_move(self, pose: CArmPose, collimation: Collimation | None = None, acquire: bool = True,
                  feedback_callback=None):
        goal = MoveCArm.Goal(isocenter_mm=np.asarray(pose.isocenter_mm, dtype=float),
                             alpha_deg=float(pose.alpha_deg), beta_deg=float(pose.beta_deg),
                             set_collimation=collimation is not None, acquire=acquire)
        if collimation is not None:
            goal.collimation = collimation_to_msg(collimation)
        return self.move_client.send_goal_async(goal, feedback_callback=feedback_callback)

    def move_to(self, pose: CArmPose, collimation: Collimation | None = None, acquire: bool = True,
                timeout_s: float = 120.0, cancel_after_s: float | None = None) -> MoveOutcome:
        """Move and wait for the result. `cancel_after_s` cancels the move after that long."""
        started = self.get_clock().now()
        feedback = []
        handle = self._wait_future(self.send_move(pose, collimation, acquire, feedback.append), 10.0)
        if handle is None or not handle.accepted:
            return MoveOutcome(False, MoveCArm.Result.STATUS_REJECTED, "goal not accepted", None, started)
        result_future = handle.get_result_async()
        if cancel_after_s is not None:
            self._spin_until(lambda: result_future.done(), cancel_after_s)
            if not result_future.done():
                self._wait_future(handle.cancel_goal_async(), 5.0)
        wrapped = self._wait_future(result_future, timeout_s)
        if wrapped is None:
            self._wait_future(handle.cancel_goal_async(), 5.0)
            return MoveOutcome(True, MoveCArm.Result.STATUS_FAILED, f"no result within {timeout_s} s",
                               None, started, len(feedback))
        result = wrapped.result
        return MoveOutcome(True, result.status, result.message, result.final_state, started, len(feedback))

    def acquire(self, timeout_s: float = 30.0) -> tuple[bool, str]:
        if not self.acquire_client.wait_for_service(timeout_sec=timeout_s):
            return False, "/carm/acquire is not served"
        response = self._wait_future(self.acquire_client.call_async(Trigger.Request()), timeout_s)
        return (response.success, response.message) if response else (False, "no response")

    def segment(self, text: str = "", points_xy=(), labels=(), image: Image | None = None,
                timeout_s: float = 60.0) -> Segment.Response | None:
        """Ask segmentation_node about the latest frame (or `image`); None when it did not answer."""
        if not self.segment_client.wait_for_service(timeout_sec=min(timeout_s, 30.0)):
            return None
        request = Segment.Request(use_latest=image is None, text=text,
                                  points_xy=[float(v) for v in np.asarray(points_xy, dtype=float).reshape(-1)],
                                  point_labels=[int(v) for v in labels])
        if image is not None:
            request.image = image
        return self._wait_future(self.segment_client.call_async(request), timeout_s)

    def show(self, structure: str, view: str = "", margin_mm: float = 0.0, timeout_s: float = 300.0,
             cancel_after_s: float | None = None) -> tuple[AcquireView.Result | None, list[str]]:
        """Send a /plan/view goal and wait: (result or None, the feedback stages seen)."""
        stages: list[str] = []
        if not self.view_client.wait_for_server(timeout_sec=min(timeout_s, 60.0)):
            return None, stages
        goal = AcquireView.Goal(structure=structure, view=view, margin_mm=float(margin_mm))
        handle = self._wait_future(self.view_client.send_goal_async(
            goal, feedback_callback=lambda f: stages.append(f.feedback.stage)), 10.0)
        if handle is None or not handle.accepted:
            return None, stages
        result_future = handle.get_result_async()
        if cancel_after_s is not None:
            self._spin_until(lambda: result_future.done(), cancel_after_s)
            if not result_future.done():
                self._wait_future(handle.cancel_goal_async(), 5.0)
        wrapped = self._wait_future(result_future, timeout_s)
        return (wrapped.result if wrapped is not None else None), stages

    def send_text(self, text: str) -> None:
        """Type a command (command_node parses it; the planner acts on the intent)."""
        self.text_pub.publish(String(data=text))

    def wait_for_event(self, after: int, timeout_s: float = 300.0) -> PlanEvent | None:
        """The first /plan/events message after the first `after` ones."""
        self._spin_until(lambda: len(self.events) > after, timeout_s)
        return self.events[after] if len(self.events) > after else None

    def wait_for_frame(self, newer_than: Time | None = None, timeout_s: float = 15.0) -> CArmFrame | None:
        """The newest frame stamped after `newer_than` (asks for one if none arrives in time)."""
        def fresh() -> bool:
            return self.frame is not None and (newer_than is None or self.frame.stamp > newer_than)

        if not self._spin_until(fresh, timeout_s):
            self.acquire()  # best-effort delivery may drop a frame: ask for another once
            self._spin_until(fresh, timeout_s)
        if fresh() and self.frame.state is None:  # its state travels on a reliable topic
            self._spin_until(self._pair_state, 2.0)
        return self.frame if fresh() else None

    def _pair_state(self) -> bool:
        stamp = self.frame.stamp.to_msg()
        state = self._image_states.get((stamp.sec, stamp.nanosec))
        if state is not None:
            self.frame.state = state
        return state is not None

    def close(self) -> None:
        self.executor_.remove_node(self)
        self.destroy_node()


def create_commander(name: str = "carm_commander") -> CArmCommander:
    if not rclpy.ok():
        rclpy.init()
    return CArmCommander(name)
