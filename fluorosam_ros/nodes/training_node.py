"""training_node: the FluoroSAM trainer for ROS users.

`/training/control` (TrainingControl) starts, stops and resumes a run; `/training/status`
(TrainingStatus) reports the epoch, step, loss, learning rate, images/s and the time left.
Parameters come from `config/model.yaml`; a request may name a YAML file of TrainConfig fields
that override them. The trainer runs in a worker thread, with its progress bar in the terminal;
a stop finishes the current step and saves a checkpoint, which RESUME continues from.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import yaml
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Header

from fluorosam_ros.msg import TrainingStatus
from fluorosam_ros.srv import TrainingControl
from fluorosam_ros.train.trainer import TrainConfig, Trainer

from .common import RELIABLE_QOS, STATE_QOS, declare, run

# TrainConfig fields exposed as ROS parameters (the nested loss and prompt settings come from
# a config YAML, see TrainingControl.config_path).
PARAMETER_FIELDS = ("data_dir", "out_dir", "model", "images_per_step", "prompts_per_image", "max_steps", "lr",
                    "weight_decay", "warmup_steps", "max_points", "grad_clip", "seed", "checkpoint_every", "augment")


def train_config_from(values: dict, base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig with `values` applied; unknown keys and wrong types raise ValueError."""
    base = base or TrainConfig()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(fields)}")
    updates = {}
    for name, value in values.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping")
            updates[name] = dataclasses.replace(current, **value)
        elif isinstance(current, tuple):
            updates[name] = tuple(value)
        elif current is not None and not isinstance(value, type(current)) and not (
                isinstance(current, float) and isinstance(value, int)):
            raise ValueError(f"{name} must be {type(current).__name__}, got {value!r}")
        else:
            updates[name] = value
    config = dataclasses.replace(base, **updates)
    if config.max_steps <= 0 or config.images_per_step <= 0 or config.lr <= 0:
        raise ValueError("max_steps, images_per_step and lr must be positive")
    return config


class TrainingNode(Node):
    def __init__(self) -> None:
        super().__init__("training_node")
        defaults = TrainConfig()
        values = {name: declare(self, name, getattr(defaults, name)) for name in PARAMETER_FIELDS}
        self.base_config = train_config_from(values)
        self.status_period_s = declare(self, "status_period_s", 1.0, "how often the status is republished")
        self.status_pub = self.create_publisher(TrainingStatus, "/training/status", STATE_QOS)
        self.create_service(TrainingControl, "/training/control", self._on_control,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(self.status_period_s, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup())
        self._status = TrainingStatus(state=TrainingStatus.IDLE, message="waiting for /training/control START")
        self._trainer: Trainer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._publish_status()

    # ---- control -------------------------------------------------------------------------
    def _on_control(self, request: TrainingControl.Request,
                    response: TrainingControl.Response) -> TrainingControl.Response:
        try:
            if request.command == TrainingControl.Request.STOP:
                response.message = self._stop()
            elif request.command in (TrainingControl.Request.START, TrainingControl.Request.RESUME):
                response.message = self._start(request.config_path, resume=request.command == TrainingControl.Request.RESUME)
            else:
                raise ValueError(f"unknown command {request.command}; use START=0, STOP=1 or RESUME=2")
            response.success = True
        except (ValueError, OSError, RuntimeError, yaml.YAMLError) as error:
            response.success, response.message = False, str(error)
            self.get_logger().error(f"/training/control refused: {error}")
        return response

    def _start(self, config_path: str, resume: bool) -> str:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError("a training run is already going; STOP it first")
            config = self.base_config
            if config_path:
                loaded = yaml.safe_load(Path(config_path).read_text()) or {}
                if not isinstance(loaded, dict):
                    raise ValueError(f"{config_path} must hold a mapping of training settings")
                config = train_config_from(loaded, config)
            checkpoint = Path(config.out_dir) / "checkpoint_last.pt"
            if resume and not checkpoint.is_file():
                raise ValueError(f"nothing to resume: {checkpoint} does not exist")
            if not resume and checkpoint.is_file():
                raise ValueError(f"{checkpoint} exists: RESUME it, or START with another out_dir")
            config = dataclasses.replace(config, resume=resume)
            self._set_status(TrainingStatus.RUNNING, "loading the model and data", total_steps=config.max_steps)
            self._thread = threading.Thread(target=self._run, args=(config,), daemon=True, name="trainer")
            self._thread.start()
        return f"{'resuming' if resume else 'starting'} {config.model} for {config.max_steps} steps into {config.out_dir}"

    def _stop(self) -> str:
        trainer = self._trainer
        if trainer is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("no training run is going")
        trainer.request_stop()
        return "stopping after the current step (a checkpoint is saved; RESUME continues)"

    def _run(self, config: TrainConfig) -> None:
        try:
            self._trainer = Trainer(config, status_callback=self._on_metrics)
            self._set_status(TrainingStatus.RUNNING, f"training from step {self._trainer.step}",
                             step=self._trainer.step, total_steps=config.max_steps)
            self._trainer.fit(progress=True)
            finished = self._trainer.step >= config.max_steps
            self._set_status(TrainingStatus.FINISHED if finished else TrainingStatus.STOPPED,
                             f"{'finished' if finished else 'stopped'} at step {self._trainer.step}; "
                             f"checkpoint {Path(config.out_dir) / 'checkpoint_last.pt'}", step=self._trainer.step)
        except Exception as error:  # a failed run is reported, the node stays up for the next one
            self.get_logger().error(f"training failed: {type(error).__name__}: {error}")
            self._set_status(TrainingStatus.FAILED, f"{type(error).__name__}: {error}")

    # ---- status --------------------------------------------------------------------------
    def _on_metrics(self, metrics: dict) -> None:
        self._set_status(TrainingStatus.RUNNING, "training", epoch=int(metrics.get("epoch", 0)),
                         step=int(metrics["step"]), loss=float(metrics["total"]),
                         learning_rate=float(metrics["lr"]), images_per_s=float(metrics["images_per_s"]),
                         eta_s=float(metrics["eta_s"]))

    def _set_status(self, state: str, message: str, **fields) -> None:
        status = self._status
        updated = TrainingStatus(state=state, message=message, epoch=fields.get("epoch", status.epoch),
                                 step=fields.get("step", status.step),
                                 total_steps=fields.get("total_steps", status.total_steps),
                                 loss=fields.get("loss", status.loss),
                                 learning_rate=fields.get("learning_rate", status.learning_rate),
                                 images_per_s=fields.get("images_per_s", status.images_per_s),
                                 eta_s=fields.get("eta_s", status.eta_s))
        self._status = updated
        self._publish_status()

    def _publish_status(self) -> None:
        self._status.header = Header(stamp=self.get_clock().now().to_msg())
        self.status_pub.publish(self._status)

    def close(self) -> None:
        if self._trainer is not None and self._thread is not None and self._thread.is_alive():
            self._trainer.request_stop()
            self._thread.join(timeout=120.0)


def main() -> None:
    run(TrainingNode)


if __name__ == "__main__":
    main()
