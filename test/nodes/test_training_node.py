"""training_node as its own process: START, watch /training/status, STOP, RESUME, bad requests."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from ros_harness import launched, read_logs

from fluorosam_ros.data.generate import GeneratorConfig, generate
from fluorosam_ros.msg import TrainingStatus
from fluorosam_ros.nodes.common import STATE_QOS
from fluorosam_ros.srv import TrainingControl

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(900)]


class TrainingClient(Node):
    def __init__(self) -> None:
        super().__init__("test_training_client")
        self.control = self.create_client(TrainingControl, "/training/control")
        self.statuses: list[TrainingStatus] = []
        self.create_subscription(TrainingStatus, "/training/status", self.statuses.append, STATE_QOS)
        self.executor_ = SingleThreadedExecutor()
        self.executor_.add_node(self)

    def call(self, command: int, config_path: str = "") -> TrainingControl.Response:
        future = self.control.call_async(TrainingControl.Request(command=command, config_path=config_path))
        self.executor_.spin_until_future_complete(future, timeout_sec=60)
        assert future.done(), "no answer from /training/control"
        return future.result()

    def wait_for(self, predicate, timeout_s: float) -> TrainingStatus | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor_.spin_once(timeout_sec=0.1)
            if self.statuses and predicate(self.statuses[-1]):
                return self.statuses[-1]
        return None


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_node")
    data = root / "data"
    generate(replace(GeneratorConfig(), out_dir=str(data), images=6, image_size_px=64, shard_size=3, workers=1,
                     deformation_probability=0.0, seed=5), progress=False)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"image_size": 64, "images_per_step": 1, "prompts_per_image": 2,
                                      "max_points": 1, "max_steps": 40, "warmup_steps": 2, "augment": False,
                                      "checkpoint_every": 1000}))
    logs = root / "logs"
    logs.mkdir()
    with launched("training.launch.yaml", logs, data_dir=str(data), out_dir=str(root / "run")) as launcher:
        rclpy.init()
        client = TrainingClient()
        try:
            if not client.control.wait_for_service(timeout_sec=120):
                pytest.fail("training_node did not come up:\n" + read_logs(logs))
            yield client, config, root / "run", logs
        finally:
            client.destroy_node()
            rclpy.try_shutdown()
        assert all(p.poll() is None for p in launcher.processes.values()), read_logs(logs)


def test_start_stop_resume_and_status(training):
    client, config, run_dir, logs = training
    idle = client.wait_for(lambda s: True, 30)
    assert idle is not None and idle.state == TrainingStatus.IDLE

    assert client.call(TrainingControl.Request.RESUME, str(config)).success is False  # nothing to resume yet
    started = client.call(TrainingControl.Request.START, str(config))
    assert started.success, started.message
    running = client.wait_for(lambda s: s.state == TrainingStatus.RUNNING and s.step >= 3, 300)
    assert running is not None, read_logs(logs)
    assert running.total_steps == 40 and running.loss > 0 and running.learning_rate > 0 and running.images_per_s > 0

    again = client.call(TrainingControl.Request.START, str(config))
    assert not again.success and "already" in again.message

    assert client.call(TrainingControl.Request.STOP).success
    stopped = client.wait_for(lambda s: s.state == TrainingStatus.STOPPED, 120)
    assert stopped is not None, read_logs(logs)
    assert (Path(run_dir) / "checkpoint_last.pt").is_file()

    resumed = client.call(TrainingControl.Request.RESUME, str(config))
    assert resumed.success, resumed.message
    continuing = client.wait_for(lambda s: s.state == TrainingStatus.RUNNING and s.step > stopped.step, 300)
    assert continuing is not None, read_logs(logs)
    finished = client.wait_for(lambda s: s.state == TrainingStatus.FINISHED, 600)
    assert finished is not None and finished.step == 40, read_logs(logs)


def test_bad_requests_are_refused(training, tmp_path):
    client, _, _, _ = training
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("learning_speed: 3\n")
    response = client.call(TrainingControl.Request.START, str(unknown))
    assert not response.success and "unknown training settings" in response.message
    response = client.call(TrainingControl.Request.START, str(tmp_path / "missing.yaml"))
    assert not response.success and "missing.yaml" in response.message
    response = client.call(9)
    assert not response.success and "unknown command" in response.message
