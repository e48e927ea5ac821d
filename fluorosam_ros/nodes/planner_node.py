"""planner_node: requests -> C-arm poses and collimation (the loop lives in fluorosam_ros.control).

Serves the /plan/view action (AcquireView: segment -> localise -> plan -> move -> acquire ->
re-segment -> one refinement), and acts on /command/intent (show, collimate, move, rotate,
tilt, zoom, acquire, undo, where, stop). `stop` cancels the running request and the C-arm's
move at once. Every planned target is also published for integrators whose own controller
drives the C-arm: /plan/target_state (CArmState), /plan/target_pose (PoseStamped of the camera
frame in the world frame) and /plan/target_collimation. What happened to each request goes to
/plan/events.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import queue
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from fluorosam_ros.action import AcquireView, MoveCArm
from fluorosam_ros.control.acquisition import AcquireOutcome, AcquireRequest, AcquisitionError, ViewAcquisition
from fluorosam_ros.control.collimation import adjust_collimation
from fluorosam_ros.control.config import PlannerConfig
from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.twin_prior import TwinPrior
from fluorosam_ros.control.views import relative_move
from fluorosam_ros.geometry.carm import CArmConfig, CArmState
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Collimation as CollimationMsg
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.msg import PlanEvent
from fluorosam_ros.srv import Segment
from fluorosam_ros.twin.config import TwinConfig

from .common import RELIABLE_QOS, SENSOR_QOS, STATE_QOS, declare, run
from .conversions import (
    MessageError,
    carm_config_from_msg,
    carm_state_from_msg,
    carm_state_to_msg,
    collimation_to_msg,
)
from .planner_ports import RosCArm, RosFrame, RosSegmenter, frame_from_messages

MOTION_KINDS = ("show", "collimate", "move", "rotate", "tilt", "zoom", "undo")
UNIT_SCALE = {"mm": 1.0, "millimetre": 1.0, "millimeter": 1.0, "cm": 10.0, "centimetre": 10.0,
              "centimeter": 10.0, "m": 1000.0, "deg": 1.0, "degree": 1.0, "degrees": 1.0, "": 1.0}


def flatten(config: PlannerConfig) -> dict:
    """PlannerConfig as dotted ROS parameter names with ROS-typed defaults."""
    flat = {}
    for section, values in config.to_dict().items():
        items = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in items:
            name = f"{section}.{key}" if key else section
            if isinstance(value, (tuple, list)):
                # ROS arrays are typed: whole-number settings (grid sizes, budgets) stay integers
                whole = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                value = [int(v) for v in value] if whole and value else [float(v) for v in value]
            flat[name] = value
    return flat


class PlannerNode(Node):
    def __init__(self) -> None:
        super().__init__("planner_node")
        self.frame_id = declare(self, "frame_id", "world", "world frame (patient LPS, mm)")
        self.camera_frame_id = declare(self, "camera_frame_id", "carm_camera", "frame of /plan/target_pose")
        self.confidence_threshold = declare(self, "confidence_threshold", 0.6,
                                            "an intent that moves the C-arm needs this confidence")
        self.timeouts = {"segment_s": declare(self, "segment_timeout_s", 30.0, "watchdog: /segment"),
                         "move_s": declare(self, "move_timeout_s", 90.0, "watchdog: one /carm/move"),
                         "frame_s": declare(self, "frame_timeout_s", 10.0, "watchdog: a frame after a move"),
                         "service_s": declare(self, "service_timeout_s", 10.0, "waiting for a peer to appear"),
                         "state_s": declare(self, "state_timeout_s", 3.0,
                                            "watchdog: no /carm/state this long during a move = C-arm gone")}
        self.isocenter_margin_mm = declare(self, "isocenter_margin_mm", 150.0, "isocenter travel beyond the patient")
        self.gamma_deg = declare(self, "gamma_deg", 0.0, "detector roll of the driver's geometry")
        self.inject_registration_error = declare(
            self, "inject_registration_error", True,
            "simulation: misregister the twin by twin_error.* (a real set-up registers it instead)")
        world_from_twin = declare(self, "world_from_twin", [float(v) for v in np.eye(4).reshape(-1)],
                                  "the twin's registration, row-major 4x4 (used when no error is injected)")
        values = {name: declare(self, name, default) for name, default in flatten(PlannerConfig()).items()}
        self.config = PlannerConfig.from_parameters(values)
        twin = TwinConfig(**{f.name: declare(self, f.name, f.default) for f in dataclasses.fields(TwinConfig)})

        started = time.perf_counter()
        self.patient = twin.load_patient()
        if self.inject_registration_error:
            prior = TwinPrior.with_injected_error(self.patient, self.config.twin_error)
        else:
            prior = TwinPrior(self.patient, np.asarray(world_from_twin, dtype=float).reshape(4, 4))
        corners = self.patient.corners_world()
        self.isocenter_bounds = (corners.min(axis=0) - self.isocenter_margin_mm,
                                 corners.max(axis=0) + self.isocenter_margin_mm)
        self.device: CArmConfig | None = None
        self.state_msg: CArmStateMsg | None = None
        self.last_state_at = -math.inf              # time.monotonic() of the last valid /carm/state
        # the structure the last successful view showed: a view named alone ("lateral please",
        # "LAO 45") turns to it (intents.py: a view alone keeps the current target)
        self.current_target = ""
        # poses before each motion, for undo; bounded so that a long session cannot grow it forever
        self.history: collections.deque[CArmState] = collections.deque(
            maxlen=max(1, declare(self, "undo_depth", 50, "how many motions 'undo' can go back (>= 1)")))
        self.motions = 0                             # targets sent to the C-arm so far
        self.last_good: CArmState | None = None
        self.active_move = None
        self._frames_lock = threading.Lock()
        self._image_states: dict[tuple[int, int], CArmStateMsg] = {}
        self._latest: tuple[Image, CArmStateMsg] | None = None
        # every stop bumps this count; a request is canceled once the count moved past the value
        # it was accepted with. A count, not an event that each request clears: a stop arriving
        # between a request leaving the queue and its move starting would otherwise be lost
        self._stops = 0
        self._stops_lock = threading.Lock()  # the intent and the action-cancel callbacks may race
        self._active_generation = 0
        self._busy = threading.Lock()
        self.frames_refused = 0

        clients = ReentrantCallbackGroup()
        self.move_client = ActionClient(self, MoveCArm, "/carm/move", callback_group=clients)
        self.acquire_client = self.create_client(Trigger, "/carm/acquire", callback_group=clients)
        self.segment_client = self.create_client(Segment, "/segment", callback_group=clients)
        self.loop = ViewAcquisition(RosCArm(self), RosSegmenter(self), self.config, prior)
        _ = self.loop.image_registrar  # build the twin's reduced CTs now, not in the first request

        self.create_subscription(CArmStateMsg, "/carm/state", self._on_state, STATE_QOS, callback_group=clients)
        self.create_subscription(CArmStateMsg, "/carm/image_state", self._on_image_state, RELIABLE_QOS,
                                 callback_group=clients)
        self.create_subscription(Image, "/carm/image", self._on_image, SENSOR_QOS, callback_group=clients)
        self.create_subscription(IntentMsg, "/command/intent", self._on_intent, RELIABLE_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.target_state_pub = self.create_publisher(CArmStateMsg, "/plan/target_state", STATE_QOS)
        self.target_pose_pub = self.create_publisher(PoseStamped, "/plan/target_pose", STATE_QOS)
        self.target_collimation_pub = self.create_publisher(CollimationMsg, "/plan/target_collimation", STATE_QOS)
        self.events_pub = self.create_publisher(PlanEvent, "/plan/events", RELIABLE_QOS)
        self.action_server = ActionServer(self, AcquireView, "/plan/view", execute_callback=self._execute,
                                          goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                          callback_group=ReentrantCallbackGroup())
        self._requests: queue.Queue = queue.Queue(maxsize=50)
        self._worker = threading.Thread(target=self._work, name="planner_intents", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"planner ready: localisation {self.config.localisation_mode}, twin {self.patient.patient_id} "
            f"({time.perf_counter() - started:.1f} s), registration error "
            f"{'injected' if self.inject_registration_error else 'none (world_from_twin given)'}")

    # ---- C-arm state and frames ----------------------------------------------------------
    def _on_state(self, msg: CArmStateMsg) -> None:
        try:
            device = self.device
            if device is None or _device_changed(device, msg):
                device = carm_config_from_msg(msg, *self.isocenter_bounds, gamma_deg=self.gamma_deg)
            state = carm_state_from_msg(msg, device)
        except MessageError as error:
            self.get_logger().error(f"ignoring /carm/state: {error}", throttle_duration_sec=5.0)
            return
        except Exception as error:  # an exception here would end the node
            self.get_logger().error(f"ignoring /carm/state ({error!r})", throttle_duration_sec=5.0)
            return
        if device is not self.device:  # taken only with a valid state: the two always agree
            self.get_logger().info(f"C-arm geometry from /carm/state: {device.sensor_width_px}x"
                                   f"{device.sensor_height_px} px, mirror_columns={device.mirror_columns}")
        self.device, self.state_msg = device, msg
        self.last_state_at = time.monotonic()
        if not msg.moving:
            self.last_good = state

    def _on_image_state(self, msg: CArmStateMsg) -> None:
        with self._frames_lock:
            self._image_states[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
            while len(self._image_states) > 20:
                self._image_states.pop(next(iter(self._image_states)))

    def _on_image(self, msg: Image) -> None:
        with self._frames_lock:
            state = self._image_states.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if state is None:  # its state travels on a reliable topic and may come a moment later
            time.sleep(0.05)
            with self._frames_lock:
                state = self._image_states.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if state is None:
            self.frames_refused += 1
            self.get_logger().warning("a frame arrived without its /carm/image_state; ignored",
                                      throttle_duration_sec=5.0)
            return
        self._latest = (msg, state)

    def latest_frame(self) -> RosFrame | None:
        latest = self._latest
        if latest is None or self.device is None:
            return None
        image, state_msg = latest
        try:
            return frame_from_messages(image, state_msg, carm_state_from_msg(state_msg, self.device))
        except MessageError as error:
            self.get_logger().error(f"ignoring a malformed frame: {error}")
            return None

    def current_state(self) -> CArmState:
        if self.state_msg is None or self.device is None:
            raise AcquisitionError("carm_unavailable", "no /carm/state received yet")
        return carm_state_from_msg(self.state_msg, self.device)

    def remember_pose(self, state: CArmState) -> None:
        self.last_good = state

    def publish_target(self, target: CArmState) -> None:
        self.motions += 1
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        self.target_state_pub.publish(carm_state_to_msg(target, header))
        self.target_collimation_pub.publish(collimation_to_msg(target.collimation))
        world_from_camera = target.camera().world_from_camera
        quaternion = Rotation.from_matrix(world_from_camera[:3, :3]).as_quat()  # x, y, z, w
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in world_from_camera[:3, 3])
        (pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z,
         pose.pose.orientation.w) = (float(v) for v in quaternion)
        self.target_pose_pub.publish(pose)

    # ---- the /plan/view action -----------------------------------------------------------
    def _on_goal(self, goal: AcquireView.Goal) -> GoalResponse:
        if self._busy.locked():
            self.get_logger().warning("/plan/view goal rejected: another request is running")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, _goal) -> CancelResponse:
        self.stop_motion("the /plan/view goal was canceled")
        return CancelResponse.ACCEPT

    def _execute(self, handle) -> AcquireView.Result:
        goal = handle.request
        started = time.perf_counter()
        generation = self._stops

        def feedback(stage: str, detail: str) -> None:
            handle.publish_feedback(AcquireView.Feedback(stage=stage, detail=detail))

        try:
            request = AcquireRequest(goal.structure, goal.view, float(goal.margin_mm))
        except PlanningInputError as error:
            outcome = AcquireOutcome(False, str(error), "invalid")
        else:
            outcome = AcquireOutcome(False, "canceled before it started", "canceled") \
                if handle.is_cancel_requested else self.acquire_view(request, generation, feedback)
        result = self._result_msg(outcome)
        self._publish_event("show", goal.structure, goal.view, "", outcome, time.perf_counter() - started)
        if outcome.failure_reason == "canceled" and handle.is_cancel_requested:
            handle.canceled()
        elif outcome.success:
            handle.succeed()
        else:
            handle.abort()
        return result

    def acquire_view(self, request: AcquireRequest, generation: int, feedback=None) -> AcquireOutcome:
        if not self._busy.acquire(blocking=False):
            return AcquireOutcome(False, "another request is running", "busy")
        try:
            self._active_generation = generation
            before = self.current_state() if self.state_msg is not None and self.device is not None else None
            motions = self.motions
            outcome = self.loop.run(request, feedback, self.cancel_requested)
            if before is not None and self.motions != motions:  # undo returns to before a request that moved
                self.history.append(before)
            if outcome.success:
                self.current_target = request.structure
            self.get_logger().info(f"AcquireView {request.structure!r} {request.view!r}: {outcome.summary()}")
            return outcome
        finally:
            self._busy.release()

    def _result_msg(self, outcome: AcquireOutcome) -> AcquireView.Result:
        result = AcquireView.Result(success=outcome.success, message=outcome.message,
                                    failure_reason=outcome.failure_reason,
                                    centring_error_px=_finite_or(outcome.centring_error_px),
                                    coverage=_finite_or(outcome.coverage),
                                    collimated_area_fraction=_finite_or(outcome.collimated_area_fraction),
                                    acquisitions=outcome.acquisitions)
        if outcome.final_state is not None:
            result.final_state = carm_state_to_msg(outcome.final_state, Header(frame_id=self.frame_id))
        return result

    # ---- /command/intent -----------------------------------------------------------------
    def _on_intent(self, msg: IntentMsg) -> None:
        try:
            self._dispatch_intent(msg)
        except Exception as error:  # a bad message or a bug must not take the node down
            self.get_logger().error(f"intent {msg.kind!r} could not be handled: {error!r}")

    def _dispatch_intent(self, msg: IntentMsg) -> None:
        if msg.kind == IntentMsg.STOP:
            self.stop_motion(f"stop: {msg.source_text!r}")
            self._publish_simple(msg, True, "", "stopped: the running request and the C-arm's move are canceled")
            return
        if msg.kind == IntentMsg.NOT_UNDERSTOOD:
            self._publish_simple(msg, False, "not_understood", f"not understood: {msg.error or msg.source_text!r}")
            return
        if msg.kind in MOTION_KINDS + (IntentMsg.ACQUIRE,) \
                and not self.confidence_threshold <= msg.confidence <= 1.0:  # NaN fails too
            self._publish_simple(msg, False, "refused", f"confidence {msg.confidence:.2f} is not within "
                                                        f"[{self.confidence_threshold:.2f}, 1]: nothing moved")
            return
        try:
            self._requests.put_nowait((msg, self._stops))
        except queue.Full:
            self._publish_simple(msg, False, "busy", "too many queued requests; this one was dropped")

    def _work(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            msg, generation = item
            started = time.perf_counter()
            try:
                outcome = self._handle_intent(msg, generation)
            except (AcquisitionError, PlanningInputError, MessageError) as error:
                outcome = AcquireOutcome(False, str(error), getattr(error, "reason", "invalid"))
            except Exception as error:  # a bug must not kill the worker: log it, keep serving
                self.get_logger().error(f"intent {msg.kind!r} failed unexpectedly: {error!r}")
                outcome = AcquireOutcome(False, f"internal error: {error!r}", "internal_error")
            self._publish_event(msg.kind, msg.structure, msg.view, msg.source_text, outcome,
                                time.perf_counter() - started)

    def _handle_intent(self, msg: IntentMsg, generation: int) -> AcquireOutcome:
        if generation != self._stops:  # queued before a stop that the drain missed
            return AcquireOutcome(False, "stopped before it started", "canceled")
        kind = msg.kind
        angle = float(msg.amount) if msg.unit.startswith("deg") else math.nan    # a view's own angle
        if kind in (IntentMsg.SHOW, IntentMsg.COLLIMATE) and msg.structure:
            request = AcquireRequest(msg.structure, msg.view if kind == IntentMsg.SHOW else "", 0.0, angle)
            return self.acquire_view(request, generation)
        if kind == IntentMsg.SHOW and msg.view:
            if not self.current_target:
                return AcquireOutcome(False, f"a view alone ({msg.view}) turns to the structure shown last, and none "
                                      "has been shown yet: name the structure", "no_target")
            return self.acquire_view(AcquireRequest(self.current_target, msg.view, 0.0, angle), generation)
        if kind == IntentMsg.WHERE:
            return self._where(msg.structure)
        if kind == IntentMsg.ACQUIRE:
            frame = RosCArm(self).acquire()
            return AcquireOutcome(True, "acquired", final_state=frame.state, acquisitions=1)
        current = self.current_state()
        if kind == IntentMsg.COLLIMATE:
            collimation = adjust_collimation(current.collimation, msg.direction or "tighter",
                                             current.config.sensor_width_px, current.config.sensor_height_px)
            return self._move_to(current.with_collimation(collimation), f"collimation {msg.direction}", generation)
        if kind == IntentMsg.UNDO:
            if not self.history:
                return AcquireOutcome(False, "nothing to undo", "nothing_to_undo")
            return self._move_to(self.history.pop(), "undo", generation, remember=False)
        if kind in (IntentMsg.MOVE, IntentMsg.ROTATE, IntentMsg.TILT, IntentMsg.ZOOM):
            if math.isinf(msg.amount):  # NaN means "not given" (the default step); inf is malformed
                raise PlanningInputError(f"{kind} by {msg.amount} {msg.unit}: the amount must be finite")
            amount = float(msg.amount) * UNIT_SCALE.get(msg.unit.lower(), 1.0) if math.isfinite(msg.amount) else None
            result = relative_move(current.pose, current.geometry, kind, msg.direction or None, amount,
                                   config=self.config.views)
            message = f"{kind} {msg.direction}" + (f" (clamped: {result.message})" if result.clamped else "")
            return self._move_to(current.with_pose(result.pose), message, generation)
        raise PlanningInputError(f"the planner does not act on {kind!r} intents")

    def _move_to(self, target: CArmState, what: str, generation: int, remember: bool = True) -> AcquireOutcome:
        if not self._busy.acquire(blocking=False):
            return AcquireOutcome(False, "another request is running", "busy")
        try:
            self._active_generation = generation
            before, motions = self.current_state(), self.motions
            try:
                frame = RosCArm(self).move(target, acquire=True)
            finally:  # a move that was sent, even one stopped half-way, can be undone
                if remember and self.motions != motions:
                    self.history.append(before)
            return AcquireOutcome(True, what, final_state=frame.state, acquisitions=1)
        finally:
            self._busy.release()

    def _where(self, structure: str) -> AcquireOutcome:
        frame = self.latest_frame()
        if frame is None:
            return AcquireOutcome(False, "no frame to look at yet", "no_frame")
        target = self.loop.resolve(structure)
        mask = RosSegmenter(self).segment(frame, target)
        if mask is None:
            return AcquireOutcome(False, f"'{target.prompt}' is not in the current image", "not_found",
                                  final_state=frame.state)
        return AcquireOutcome(True, f"'{target.prompt}' found ({int(mask.sum())} px); nothing moved",
                              final_state=frame.state, final_mask=mask)

    def cancel_requested(self) -> bool:
        """Whether a stop came after the running request was accepted."""
        return self._stops != self._active_generation

    def _count_stop(self) -> None:
        with self._stops_lock:
            self._stops += 1

    def stop_motion(self, why: str) -> None:
        self._count_stop()
        handle = self.active_move
        if handle is not None:
            handle.cancel_goal_async()
        drained = 0
        while True:
            try:
                self._requests.get_nowait()
                drained += 1
            except queue.Empty:
                break
        self.get_logger().warning(f"{why}; {drained} queued request(s) dropped")

    # ---- events --------------------------------------------------------------------------
    def _publish_simple(self, msg: IntentMsg, success: bool, reason: str, message: str) -> None:
        if success:
            self.get_logger().info(message)
        else:
            self.get_logger().warning(message)
        self._publish_event(msg.kind, msg.structure, msg.view, msg.source_text,
                            AcquireOutcome(success, message, reason), 0.0)

    def _publish_event(self, kind: str, structure: str, view: str, source_text: str,
                       outcome: AcquireOutcome, wall_time_s: float) -> None:
        event = PlanEvent(header=Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id),
                          kind=kind, structure=structure, view=view, source_text=source_text[:500],
                          success=outcome.success, failure_reason=outcome.failure_reason,
                          message=outcome.message[:1000], centring_error_px=_finite_or(outcome.centring_error_px),
                          coverage=_finite_or(outcome.coverage),
                          collimated_area_fraction=_finite_or(outcome.collimated_area_fraction),
                          acquisitions=outcome.acquisitions, wall_time_s=float(wall_time_s))
        if outcome.final_state is not None:
            event.final_state = carm_state_to_msg(outcome.final_state, Header(frame_id=self.frame_id))
        self.events_pub.publish(event)

    def close(self) -> None:
        self._count_stop()
        self._requests.put(None)


def _finite_or(value: float, default: float = -1.0) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


def _device_changed(device: CArmConfig, msg: CArmStateMsg) -> bool:
    return (device.sensor_width_px, device.sensor_height_px) != (msg.sensor_width_px, msg.sensor_height_px) \
        or not math.isclose(device.pixel_size_mm, msg.pixel_size_mm)


def main() -> None:
    run(PlannerNode, threads=6)


if __name__ == "__main__":
    main()
