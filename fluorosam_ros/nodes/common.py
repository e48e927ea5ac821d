"""What every node shares: environment defaults, QoS profiles, parameters and a clean main()."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# Images: a slow consumer must never build a backlog; the newest frame is what matters.
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
# State: reliable, and latched so a late subscriber gets the current pose at once.
STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Commands and results: reliable, with room for bursts.
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)


def configure_ros_environment() -> None:
    """Defaults a node needs when started outside our scripts (explicit settings win)."""
    profile = PACKAGE_ROOT / "config" / "fastdds_profile.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    os.environ.setdefault("ROS_LOG_DIR", str(PACKAGE_ROOT / ".ros" / "log"))


def declare(node: Node, name: str, default: Any, description: str = "") -> Any:
    """Declare a typed parameter (the type comes from the default) and return its value."""
    from rcl_interfaces.msg import ParameterDescriptor

    if isinstance(default, float):
        # "time_scale:=10" arrives as an integer: accept it for a float parameter
        value = node.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                          dynamic_typing=True)).value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)
    return node.declare_parameter(name, default, ParameterDescriptor(description=description)).value


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def run(node_factory: Callable[[], Node], threads: int = 2) -> None:
    """Spin a node until SIGINT/SIGTERM and shut down without tracebacks."""
    configure_ros_environment()
    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init(args=sys.argv)
    node = None
    executor = MultiThreadedExecutor(num_threads=threads)
    try:
        node = node_factory()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
