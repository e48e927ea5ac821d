"""carm_sim: the simulated C-arm. Renders the digital twin at its pose and serves /carm/move.

A real C-arm driver replaces this node by publishing the same topics and serving the same
action (see README, "Plugging in a real C-arm").
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from fluorosam_ros.action import MoveCArm
from fluorosam_ros.geometry.carm import CArmConfig, CArmGeometry, CArmPose, CArmState, PoseError
from fluorosam_ros.geometry.collimation import CollimationError
from fluorosam_ros.geometry.motion import JointMotion
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.twin.config import TwinConfig
from fluorosam_ros.twin.detector import to_mono16

from .common import RELIABLE_QOS, SENSOR_QOS, STATE_QOS, declare, run
from .conversions import (
    MessageError,
    camera_info_msg,
    carm_state_to_msg,
    collimation_from_msg,
    image_to_msg,
    pose_from_values,
)

CARM_PARAMETERS = {
    "source_to_detector_distance_mm": 1020.0,
    "source_to_isocenter_distance_mm": 530.0,
    "source_to_isocenter_horizontal_offset_mm": 0.0,
    "sensor_width_px": 1536,
    "sensor_height_px": 1536,
    "pixel_size_mm": 0.194,
    "min_alpha_deg": -40.0,
    "max_alpha_deg": 110.0,
    "min_beta_deg": -225.0,
    "max_beta_deg": 225.0,
    "gamma_deg": 0.0,
    "mirror_columns": True,
    "max_angular_speed_deg_s": 30.0,
    "max_translation_speed_mm_s": 100.0,
}


@dataclasses.dataclass
class Frame:
    image: Image
    camera_info: CameraInfo
    state: CArmStateMsg
    render_s: float
    rendered_at: tuple  # (pose, collimation) it shows


class CArmSimNode(Node):
    def __init__(self) -> None:
        super().__init__("carm_sim")
        self.frame_id = declare(self, "frame_id", "world", "world frame (patient LPS, mm)")
        self.camera_frame_id = declare(self, "camera_frame_id", "carm_camera", "optical frame of the images")
        self.control_rate_hz = declare(self, "control_rate_hz", 20.0, "motion update and feedback rate")
        self.state_rate_hz = declare(self, "state_rate_hz", 10.0, "/carm/state publishing rate")
        self.image_rate_hz = declare(self, "image_rate_hz", 0.0, "continuous fluoroscopy rate; 0 = on request")
        self.time_scale = declare(self, "time_scale", 1.0, "simulated motion runs this many times faster")
        self.publish_line_integral = declare(self, "publish_line_integral", False, "also publish 32FC1 line integrals")
        stop_topic = declare(self, "stop_topic", "/command/intent",
                             "a 'stop' intent here halts the running move directly; empty = planner only")
        image_size_px = declare(self, "image_size_px", 384, "rendered resolution (the detector is binned)")
        isocenter_margin_mm = declare(self, "isocenter_margin_mm", 150.0, "isocenter travel beyond the patient")
        initial_alpha = declare(self, "initial_alpha_deg", 0.0)
        initial_beta = declare(self, "initial_beta_deg", 0.0)
        initial_isocenter = declare(self, "initial_isocenter_mm", [float("nan")] * 3,
                                    "NaN = the patient's centre")
        twin_values = {f.name: declare(self, f.name, f.default) for f in dataclasses.fields(TwinConfig)}
        carm_values = {name: declare(self, name, default) for name, default in CARM_PARAMETERS.items()}

        self.twin = TwinConfig(**twin_values)
        started = time.perf_counter()
        patient = self.twin.load_patient()
        try:
            self.renderer = self.twin.build_renderer(patient)
        except RuntimeError as error:  # e.g. renderer: deepdrr on a machine without CUDA
            self.get_logger().error(f"{error}; falling back to the CPU renderer")
            self.twin = dataclasses.replace(self.twin, renderer="cpu")
            self.renderer = self.twin.build_renderer(patient)
        self.detector = self.twin.detector()
        self.rng = np.random.default_rng()
        corners = patient.corners_world()
        config = CArmConfig.for_supine_patient(
            **carm_values,
            isocenter_min_mm=tuple(corners.min(axis=0) - isocenter_margin_mm),
            isocenter_max_mm=tuple(corners.max(axis=0) + isocenter_margin_mm),
        ).with_image_size(image_size_px)
        self.geometry = CArmGeometry(config)
        isocenter = np.asarray(initial_isocenter, dtype=float)
        if not np.all(np.isfinite(isocenter)):
            isocenter = patient.center_world
        initial = CArmPose(tuple(isocenter), initial_alpha, initial_beta)
        self.geometry.validate(initial)
        self.state = CArmState(config, initial)
        self.get_logger().info(
            f"patient {patient.patient_id} {patient.shape} loaded, renderer {self.renderer.name} "
            f"({time.perf_counter() - started:.1f} s); detector {config.sensor_width_px}x"
            f"{config.sensor_height_px} px at {config.pixel_size_mm:.3f} mm")

        self.moving = False
        self.frames_published = 0
        self.moves_rejected = 0
        self.last_error = ""
        self.last_frame: Frame | None = None
        self._render_lock = threading.Lock()
        self._move_lock = threading.Lock()
        # when the last stop arrived (monotonic s): a move that started before it halts. A time, not
        # a flag, so that a stop arriving while nothing moves cannot halt the next move
        self._stop_received_at = -float("inf")

        self.image_pub = self.create_publisher(Image, "/carm/image", SENSOR_QOS)
        self.info_pub = self.create_publisher(CameraInfo, "/carm/camera_info", SENSOR_QOS)
        self.line_pub = self.create_publisher(Image, "/carm/line_integral", SENSOR_QOS)
        self.state_pub = self.create_publisher(CArmStateMsg, "/carm/state", STATE_QOS)
        self.image_state_pub = self.create_publisher(CArmStateMsg, "/carm/image_state", RELIABLE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)

        timers = MutuallyExclusiveCallbackGroup()
        self.create_timer(1.0 / self.state_rate_hz, self.publish_state, callback_group=timers)
        self.create_timer(1.0, self.publish_diagnostics, callback_group=timers)
        if self.image_rate_hz > 0:
            self.create_timer(1.0 / self.image_rate_hz, self._continuous_frame,
                              callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, "/carm/acquire", self._on_acquire,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.action_server = ActionServer(
            self, MoveCArm, "/carm/move", execute_callback=self._execute_move,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())
        if stop_topic:
            # the stop's own path: the planner cancels the move too, but on a loaded machine its hop
            # can take a second; a hardware driver wires the same topic to its motion stop
            self.create_subscription(IntentMsg, stop_topic, self._on_intent, RELIABLE_QOS,
                                     callback_group=MutuallyExclusiveCallbackGroup())
        self.publish_state()
        self.acquire()

    # ---- publishing ----------------------------------------------------------------------
    def _header(self, frame_id: str | None = None) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=frame_id or self.frame_id)

    def publish_state(self) -> None:
        self.state_pub.publish(carm_state_to_msg(self.state, self._header(), self.moving))

    def acquire(self) -> Frame:
        """Render the twin at the current state and publish the frame with its geometry."""
        with self._render_lock:
            state = self.state
            started = time.perf_counter()
            result = self.renderer.render(state, structures=None)
            intensity = self.detector.intensity(result.line_integral, result.exposed, self.rng)
            display = self.detector.display(intensity, result.exposed)
            render_s = time.perf_counter() - started
            stamp = self.get_clock().now().to_msg()
            image_header = Header(stamp=stamp, frame_id=self.camera_frame_id)
            frame = Frame(image_to_msg(to_mono16(display), "mono16", image_header),
                          camera_info_msg(result.camera, image_header),
                          carm_state_to_msg(state, Header(stamp=stamp, frame_id=self.frame_id)),
                          render_s, (state.pose, state.collimation))
            if self.publish_line_integral:
                self.line_pub.publish(image_to_msg(result.line_integral, "32FC1", image_header))
            self.last_frame = frame
            self._publish_frame(frame)
            return frame

    def _publish_frame(self, frame: Frame) -> None:
        try:
            self.image_state_pub.publish(frame.state)
            self.info_pub.publish(frame.camera_info)
            self.image_pub.publish(frame.image)
            self.frames_published += 1
        except Exception as error:  # a transport hiccup must never take the C-arm down
            self.last_error = f"publish failed: {error}"
            self.get_logger().error(self.last_error)

    def _continuous_frame(self) -> None:
        frame = self.last_frame
        if frame is None or self.moving:
            return
        if frame.rendered_at != (self.state.pose, self.state.collimation):
            self.acquire()
            return
        stamp = self.get_clock().now().to_msg()
        frame.image.header.stamp = stamp
        frame.camera_info.header.stamp = stamp
        frame.state.header.stamp = stamp
        self._publish_frame(frame)

    def publish_diagnostics(self) -> None:
        pose = self.state.pose
        level = DiagnosticStatus.WARN if self.last_error else DiagnosticStatus.OK
        status = DiagnosticStatus(
            level=level, name="carm_sim", hardware_id="simulated_carm",
            message=self.last_error or ("moving" if self.moving else "ready"),
            values=[KeyValue(key=k, value=str(v)) for k, v in {
                "alpha_deg": f"{pose.alpha_deg:.2f}", "beta_deg": f"{pose.beta_deg:.2f}",
                "isocenter_mm": ", ".join(f"{v:.1f}" for v in pose.isocenter_mm),
                "frames_published": self.frames_published, "moves_rejected": self.moves_rejected,
                "last_render_s": f"{self.last_frame.render_s:.3f}" if self.last_frame else "",
            }.items()])
        self.diag_pub.publish(DiagnosticArray(header=self._header(), status=[status]))

    # ---- requests ------------------------------------------------------------------------
    def _on_intent(self, msg: IntentMsg) -> None:
        if msg.kind != IntentMsg.STOP:
            return
        self._stop_received_at = time.monotonic()
        self.get_logger().warning(f"stop {msg.source_text!r} received"
                                  + ("; halting the move" if self.moving else " (nothing moving)"))

    def _on_acquire(self, _request, response):
        try:
            frame = self.acquire()
            response.success = True
            response.message = f"frame {self.frames_published} rendered in {frame.render_s:.2f} s"
        except Exception as error:
            response.success = False
            response.message = f"acquisition failed: {error}"
            self.get_logger().error(response.message)
        return response

    def _result(self, status: int, message: str) -> MoveCArm.Result:
        return MoveCArm.Result(status=status, message=message,
                               final_state=carm_state_to_msg(self.state, self._header(), self.moving))

    def _reject(self, goal_handle, message: str) -> MoveCArm.Result:
        self.moves_rejected += 1
        self.last_error = message
        self.get_logger().warning(f"move rejected: {message}")
        goal_handle.abort()
        return self._result(MoveCArm.Result.STATUS_REJECTED, message)

    def _execute_move(self, goal_handle):
        goal = goal_handle.request
        try:
            target = pose_from_values(goal.isocenter_mm, goal.alpha_deg, goal.beta_deg)
            self.geometry.validate(target)
            collimation = self.state.collimation
            if goal.set_collimation:
                collimation = collimation_from_msg(goal.collimation)
                collimation.validate(self.state.config.sensor_width_px, self.state.config.sensor_height_px)
        except (PoseError, CollimationError, MessageError, ValueError) as error:
            return self._reject(goal_handle, str(error))
        if not self._move_lock.acquire(blocking=False):
            return self._reject(goal_handle, "another move is in progress; cancel it first")
        try:
            return self._run_motion(goal_handle, target, collimation, goal.acquire)
        except Exception as error:  # keep serving after an unexpected failure
            self.last_error = f"move failed: {error}"
            self.get_logger().error(self.last_error)
            goal_handle.abort()
            return self._result(MoveCArm.Result.STATUS_FAILED, self.last_error)
        finally:
            self.moving = False
            self._move_lock.release()
            self.publish_state()

    def _run_motion(self, goal_handle, target: CArmPose, collimation, acquire: bool) -> MoveCArm.Result:
        motion = JointMotion.plan(self.state.pose, target, self.state.config)
        period = 1.0 / self.control_rate_hz
        started = time.monotonic()
        self.moving = True
        while True:
            elapsed = (time.monotonic() - started) * self.time_scale
            if goal_handle.is_cancel_requested or not rclpy.ok():
                goal_handle.canceled()
                self.get_logger().info("move canceled; holding the current pose")
                return self._result(MoveCArm.Result.STATUS_CANCELED, "canceled; holding the current pose")
            if self._stop_received_at >= started:
                goal_handle.abort()  # no cancel request to answer: the goal ends as canceled by its result
                self.get_logger().info("move stopped; holding the current pose")
                return self._result(MoveCArm.Result.STATUS_CANCELED, "stopped; holding the current pose")
            self.state = self.state.with_pose(motion.pose_at(elapsed))
            remaining = max(motion.duration_s - elapsed, 0.0) / self.time_scale
            goal_handle.publish_feedback(MoveCArm.Feedback(
                current_state=carm_state_to_msg(self.state, self._header(), True),
                progress=motion.progress(elapsed), remaining_s=remaining))
            if elapsed >= motion.duration_s:
                break
            time.sleep(min(period, remaining) if remaining > 0 else 0)
        self.state = self.state.with_pose(target).with_collimation(collimation)
        self.moving = False
        self.last_error = ""
        message = f"reached alpha={target.alpha_deg:.1f} beta={target.beta_deg:.1f} in {motion.duration_s / self.time_scale:.2f} s"
        if acquire:
            frame = self.acquire()
            message += f"; frame rendered in {frame.render_s:.2f} s"
        goal_handle.succeed()
        return self._result(MoveCArm.Result.STATUS_SUCCEEDED, message)


def main() -> None:
    run(CArmSimNode, threads=3)


if __name__ == "__main__":
    main()
