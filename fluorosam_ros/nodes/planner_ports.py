"""The AcquireView loop's ports over ROS: the C-arm behind /carm/move, /carm/acquire and
/carm/image (+ /carm/image_state), and FluoroSAM behind /segment. planner_node owns them.

They block the calling thread (the action's, or the intent worker's) on futures that other
executor threads complete, with a timeout on every wait: a stalled peer aborts the request
with reason "timeout" and the C-arm holds its pose.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from fluorosam_ros.action import MoveCArm
from fluorosam_ros.control.acquisition import AcquisitionError, Frame
from fluorosam_ros.control.anatomy import Target
from fluorosam_ros.geometry.carm import CArmState
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.srv import Segment

from .conversions import MessageError, collimation_to_msg, image_from_msg
from .segmentation_node import display_from_image

MOVE_FAILURES = {MoveCArm.Result.STATUS_REJECTED: "rejected", MoveCArm.Result.STATUS_CANCELED: "canceled",
                 MoveCArm.Result.STATUS_FAILED: "carm_failed"}


@dataclass
class RosFrame(Frame):
    message: Image | None = None
    state_message: CArmStateMsg | None = None


def wait_for(future, timeout_s: float, what: str):
    """The future's result, or AcquisitionError("timeout") after `timeout_s`."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout_s):
        raise AcquisitionError("timeout", f"no answer from {what} within {timeout_s:g} s")
    return future.result()


def wait_for_move(node, handle, future):
    """The /carm/move result, or AcquisitionError: "timeout" after the node's move timeout, and
    "carm_unavailable" as soon as /carm/state has been silent for its state timeout (the C-arm
    driver went away mid-move; an action client alone would only notice at the move timeout).
    A stop the node saw (`node.cancel_requested()`) cancels the goal here too: the stop callback
    cancels `node.active_move` at once, but it can run before this move's handle is stored."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    started = time.monotonic()
    state_timeout = node.timeouts.get("state_s", 0.0)
    cancel_sent = False
    while True:
        if not cancel_sent and node.cancel_requested():
            handle.cancel_goal_async()
            cancel_sent = True
        if done.wait(0.05):
            break
        now = time.monotonic()
        silent = now - max(getattr(node, "last_state_at", now), started)
        if state_timeout > 0 and silent > state_timeout:
            raise AcquisitionError("carm_unavailable", f"no /carm/state for {silent:.1f} s during the move: "
                                                       "the C-arm stopped answering")
        if now - started > node.timeouts["move_s"]:
            raise AcquisitionError("timeout", f"no answer from /carm/move within {node.timeouts['move_s']:g} s")
    return future.result()


class RosCArm:
    def __init__(self, node) -> None:
        self.node = node

    def latest_frame(self) -> RosFrame | None:
        return self.node.latest_frame()

    def acquire(self) -> RosFrame:
        node = self.node
        if not node.acquire_client.wait_for_service(timeout_sec=node.timeouts["service_s"]):
            raise AcquisitionError("carm_unavailable", "/carm/acquire is not served")
        since = node.get_clock().now()
        response = wait_for(node.acquire_client.call_async(Trigger.Request()), node.timeouts["move_s"], "/carm/acquire")
        if not response.success:
            raise AcquisitionError("carm_failed", f"/carm/acquire: {response.message}")
        return self.wait_frame(since)

    def move(self, target: CArmState, acquire: bool = True) -> RosFrame | None:
        node = self.node
        node.publish_target(target)
        if not node.move_client.wait_for_server(timeout_sec=node.timeouts["service_s"]):
            raise AcquisitionError("carm_unavailable", "/carm/move is not served")
        pose = target.pose
        goal = MoveCArm.Goal(isocenter_mm=np.asarray(pose.isocenter_mm, dtype=float),
                             alpha_deg=float(pose.alpha_deg), beta_deg=float(pose.beta_deg),
                             set_collimation=True, collimation=collimation_to_msg(target.collimation),
                             acquire=acquire)
        if node.cancel_requested():
            raise AcquisitionError("canceled", "stopped before the move was sent")
        since = node.get_clock().now()
        handle = wait_for(node.move_client.send_goal_async(goal), node.timeouts["service_s"], "/carm/move")
        if not handle.accepted:
            raise AcquisitionError("rejected", "/carm/move did not accept the goal")
        node.active_move = handle
        try:
            wrapped = wait_for_move(node, handle, handle.get_result_async())
        except AcquisitionError:
            handle.cancel_goal_async()  # the C-arm holds where it is
            raise
        finally:
            node.active_move = None
        result = wrapped.result
        if result.status != MoveCArm.Result.STATUS_SUCCEEDED:
            raise AcquisitionError(MOVE_FAILURES.get(result.status, "carm_failed"), f"/carm/move: {result.message}")
        node.remember_pose(target)
        return self.wait_frame(since) if acquire else None

    def wait_frame(self, since: Time) -> RosFrame:
        """The first frame stamped after `since` (best-effort images may drop: ask once more)."""
        node = self.node
        for attempt in range(2):
            deadline = time.monotonic() + node.timeouts["frame_s"]
            while time.monotonic() < deadline:
                frame = node.latest_frame()
                if frame is not None and Time.from_msg(frame.message.header.stamp) > since:
                    return frame
                time.sleep(0.02)
            if attempt == 0 and node.acquire_client.service_is_ready():
                node.acquire_client.call_async(Trigger.Request())
        raise AcquisitionError("timeout", f"no new frame on /carm/image within {node.timeouts['frame_s']:g} s")


class RosSegmenter:
    def __init__(self, node) -> None:
        self.node = node

    def segment(self, frame: Frame, target: Target, hint_xy: np.ndarray | None = None) -> np.ndarray | None:
        node = self.node
        if not node.segment_client.wait_for_service(timeout_sec=node.timeouts["service_s"]):
            raise AcquisitionError("segmentation_unavailable", "/segment is not served")
        request = Segment.Request(use_latest=False, text=target.prompt)
        if hint_xy is not None:
            request.points_xy = [float(v) for v in np.asarray(hint_xy, dtype=float).reshape(2)]
            request.point_labels = [1]
        if isinstance(frame, RosFrame) and frame.message is not None:
            request.image = frame.message
        else:
            raise AcquisitionError("segmentation_failed", "the frame has no image message to send")
        response = wait_for(node.segment_client.call_async(request), node.timeouts["segment_s"], "/segment")
        if not response.success:
            raise AcquisitionError("segmentation_failed", f"/segment: {response.message}")
        if not response.result.found:
            return None
        try:
            mask = image_from_msg(response.result.mask) > 0
        except MessageError as error:
            raise AcquisitionError("segmentation_failed", f"/segment returned a bad mask: {error}") from error
        return mask if mask.any() else None


def frame_from_messages(image: Image, state_msg: CArmStateMsg, state: CArmState) -> RosFrame:
    size = (state.config.sensor_height_px, state.config.sensor_width_px)
    if (int(image.height), int(image.width)) != size:  # its projection would not be this image's
        raise MessageError(f"a {image.width}x{image.height} frame with the state of a {size[1]}x{size[0]} detector")
    pixels = display_from_image(image_from_msg(image))
    stamp = image.header.stamp.sec + 1e-9 * image.header.stamp.nanosec
    return RosFrame(pixels, state, stamp, image, state_msg)
