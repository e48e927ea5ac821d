"""A stand-alone process for test_interfaces: publishes one of each message and serves the
services and the AcquireView action, so the interfaces are exercised between processes."""

from __future__ import annotations

import time

import numpy as np
import rclpy
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from fluorosam_ros.action import AcquireView
from fluorosam_ros.msg import AudioChunk, Intent, Segmentation, TrainingStatus
from fluorosam_ros.srv import Segment, TrainingControl

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class InterfacePeer(Node):
    def __init__(self) -> None:
        super().__init__("interface_peer")
        self.publishers_ = []
        for msg_type, topic, msg in [
            (Intent, "/test/intent", Intent(kind=Intent.SHOW, structure="femur_left", view="lateral",
                                            confidence=0.93, candidates=["femur_left", "hip_left"])),
            (AudioChunk, "/test/audio", AudioChunk(sample_rate_hz=16000, channels=1,
                                                   samples=np.arange(-5, 5, dtype=np.int16), end_of_utterance=True)),
            (Segmentation, "/test/segmentation", Segmentation(prompt="left lung", found=True,
                                                              iou_scores=[0.9, 0.8, 0.7], absent_score=0.01)),
            (TrainingStatus, "/test/training", TrainingStatus(state=TrainingStatus.RUNNING, step=42, loss=0.5)),
        ]:
            publisher = self.create_publisher(msg_type, topic, LATCHED)
            publisher.publish(msg)
            self.publishers_.append(publisher)
        self.create_service(Segment, "/test/segment", self._segment)
        self.create_service(TrainingControl, "/test/training_control", self._control)
        self.action = ActionServer(self, AcquireView, "/test/plan_view", self._plan)

    def _segment(self, request, response):
        response.success = bool(request.text)
        response.message = f"echo {request.text} with {len(request.points_xy) // 2} points"
        response.result.prompt = request.text
        return response

    def _control(self, request, response):
        response.success = request.command == TrainingControl.Request.START
        response.message = f"command {request.command}"
        return response

    def _plan(self, goal_handle):
        # the client's feedback subscription can match after its goal arrives (seen on a loaded
        # CI machine): feedback published before that is lost, so wait for it (bounded)
        deadline = time.monotonic() + 10.0
        while self.count_subscribers("/test/plan_view/_action/feedback") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        goal_handle.publish_feedback(AcquireView.Feedback(stage="segment", detail=goal_handle.request.structure))
        goal_handle.succeed()
        return AcquireView.Result(success=True, message=f"{goal_handle.request.structure} {goal_handle.request.view}",
                                  coverage=0.97)


def main() -> None:
    rclpy.init()
    node = InterfacePeer()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
