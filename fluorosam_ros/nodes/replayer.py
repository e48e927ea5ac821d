"""Replayer: publish a recording's messages again (`fluorosam replay FILE`).

Each topic gets a publisher of its recorded type and the QoS its publishers offered when it was
recorded (channel metadata; e.g. /carm/image best-effort, /carm/state reliable and
transient-local); messages are published as the recorded serialized bytes (rclpy publishes
bytes as they are), in log-time order, spaced as recorded divided by `rate`. Nothing is
re-stamped, so consumers pair messages (segmentation_node: /carm/image with /carm/image_state)
by their recorded header stamps.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import Iterable

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from fluorosam_ros.recording import TopicInfo, iter_raw, message_class, split_type, topic_info

from .common import configure_ros_environment

# Without recorded QoS: these types are sensor streams (best-effort), the rest reliable.
SENSOR_TYPES = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
                "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/LaserScan"}


def replay_qos(info: TopicInfo) -> QoSProfile:
    """The QoS to publish a recorded topic with: what its publishers offered, else a default."""
    reliability, durability, depth = info.offered_qos()
    if not reliability:
        reliability = "best_effort" if info.type_name in SENSOR_TYPES else "reliable"
    if not durability:
        durability = "volatile"
    if depth <= 0:
        depth = 1 if durability == "transient_local" else 10
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=min(depth, 1000),
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if durability == "transient_local"
                      else DurabilityPolicy.VOLATILE)


class Replayer(Node):
    def __init__(self, path: str | Path, rate: float = 1.0, loop: bool = False,
                 topics: Iterable[str] | None = None, node_name: str = "fluorosam_replay") -> None:
        super().__init__(node_name)
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.path = Path(path)
        self.rate = float(rate)
        self.loop = loop
        infos = topic_info(self.path)
        if topics:
            wanted = {t if t.startswith("/") else "/" + t for t in topics}
            missing = wanted - set(infos)
            if missing:
                self.get_logger().warning(f"not in {self.path}: {sorted(missing)}")
            infos = {t: i for t, i in infos.items() if t in wanted}
        self.topics: dict[str, TopicInfo] = {}
        self.publishers_by_topic = {}
        for topic, info in infos.items():
            try:
                split_type(info.type_name)
                msg_type = message_class(info.type_name)
            except (LookupError, ValueError) as error:
                self.get_logger().warning(f"not replaying {topic}: {error}")
                continue
            self.topics[topic] = info
            self.publishers_by_topic[topic] = self.create_publisher(msg_type, topic, replay_qos(info))
        self.published: dict[str, int] = {topic: 0 for topic in self.topics}

    def wait_for_subscribers(self, topics: Iterable[str], timeout_s: float) -> bool:
        """True once each of `topics` has a matched subscriber (so nothing is lost to discovery)."""
        deadline = time.monotonic() + timeout_s
        publishers = [self.publishers_by_topic[t] for t in topics if t in self.publishers_by_topic]
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in publishers):
                return True
            time.sleep(0.05)
        return all(p.get_subscription_count() > 0 for p in publishers)

    def play(self, stop: threading.Event | None = None) -> int:
        """Publish the recording (again and again with `loop`) until done or `stop` is set; returns
        the number of messages published. Needs no spinning: publishers work without an executor."""
        stop = stop or threading.Event()
        total = 0
        while not stop.is_set():
            first_log = None
            started = time.monotonic()
            played = 0
            for message in iter_raw(self.path, list(self.topics)):
                if first_log is None:
                    first_log = message.log_time_ns
                due = started + (message.log_time_ns - first_log) / 1e9 / self.rate
                while not stop.is_set():
                    remaining = due - time.monotonic()
                    if remaining <= 0:
                        break
                    stop.wait(min(remaining, 0.1))
                if stop.is_set():
                    break
                self.publishers_by_topic[message.topic].publish(message.data)
                self.published[message.topic] += 1
                played += 1
            total += played
            if not self.loop or played == 0:
                break
        return total


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluorosam replay",
                                     description="Publish a recording's messages on their topics, as timed.")
    parser.add_argument("file", type=Path, help="an .mcap recording (fluorosam record, ros2 bag record -s mcap)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (2 = twice as fast)")
    parser.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    parser.add_argument("--topics", nargs="+", default=None, help="replay only these topics")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="seconds to wait after creating the publishers, for subscribers to find them")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"fluorosam replay: no such file: {args.file}")
        return 2
    if not args.rate > 0:
        parser.error("--rate must be > 0")

    configure_ros_environment()
    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init()
    replayer = None
    stop = threading.Event()
    try:
        replayer = Replayer(args.file, rate=args.rate, loop=args.loop, topics=args.topics)
        counts = ", ".join(f"{t} ({i.count})" for t, i in sorted(replayer.topics.items()))
        print(f"replaying {args.file} at {args.rate:g}x{' in a loop' if args.loop else ''}: {counts}")
        time.sleep(max(args.delay, 0.0))
        total = replayer.play(stop)
        print(f"published {total} messages")
        time.sleep(0.5)  # let the last reliable messages go out before the publishers go
    except KeyboardInterrupt:
        stop.set()
        if replayer is not None:
            print(f"stopped; published {sum(replayer.published.values())} messages")
    finally:
        if replayer is not None:
            replayer.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
