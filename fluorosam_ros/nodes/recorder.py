"""TopicRecorder: record ROS 2 topics into one MCAP file (`fluorosam record --out FILE`).

Every topic (or those matching `topics`, minus `exclude`; shell-style patterns like "/carm/*"
work in both) is recorded with ROS 2 encoding, so Foxglove, `mcap_ros2` and `ros2 bag` read the
file; see fluorosam_ros.recording for the layout. Messages are taken undecoded
(`create_subscription(..., raw=True)`), so recording costs one copy per message.

Topics are discovered every `discovery_period_s` and subscribed once they have a publisher. The
subscription's QoS follows the publishers then known, like rosbag2: reliable only when every
publisher is reliable (so reliable topics such as /carm/image_state are recorded without loss,
and best-effort ones such as /carm/image still match), transient-local when every publisher is
(so the latched /carm/state is recorded even when it was published before the recorder came).
When a publisher that such a subscription cannot match appears later, the subscription is
re-created with the weaker QoS (and volatile, so that latched messages are not recorded twice).
"""

from __future__ import annotations

import argparse
import fnmatch
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from fluorosam_ros.recording import (
    DEPTH_KEY,
    DURABILITY_KEY,
    RELIABILITY_KEY,
    RecordingWriter,
    message_class,
    message_definition,
)

from .common import configure_ros_environment

RECORD_DEPTH = 100  # a burst on a reliable topic waits here while the executor catches up


@dataclass
class _Recorded:
    type_name: str
    channel_id: int
    reliable: bool
    transient_local: bool
    subscription: object


def is_hidden(topic: str) -> bool:
    """ROS hides topics with a name part starting with '_' (e.g. /carm/move/_action/status)."""
    return any(part.startswith("_") for part in topic.split("/"))


def offered_qos(publishers) -> tuple[bool, bool, int]:
    """(all reliable, all transient-local, largest depth) of the publishers' offered QoS."""
    profiles = [p.qos_profile for p in publishers]
    reliable = all(q.reliability == ReliabilityPolicy.RELIABLE for q in profiles)
    transient_local = all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in profiles)
    depth = max((int(q.depth) for q in profiles), default=0)
    return reliable, transient_local, depth


class TopicRecorder(Node):
    def __init__(self, path: str | Path, topics: Iterable[str] | None = None, exclude: Iterable[str] = (),
                 include_hidden: bool = False, discovery_period_s: float = 0.5, compression: str = "zstd",
                 node_name: str = "fluorosam_recorder") -> None:
        super().__init__(node_name)
        self.patterns = [self._absolute(t) for t in topics] if topics else None
        self.exclude = [self._absolute(t) for t in exclude]
        self.include_hidden = include_hidden
        self.writer = RecordingWriter(path, compression=compression)
        self.path = self.writer.path
        self._recorded: dict[str, _Recorded] = {}
        self._skipped: set[str] = set()  # topics we cannot record (no definition, no Python class)
        self._graph_lock = threading.Lock()
        self._callbacks = ReentrantCallbackGroup()
        self._closed = False
        self.discover()
        self._timer = self.create_timer(discovery_period_s, self.discover,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"recording {'all topics' if self.patterns is None else self.patterns} "
                               f"to {self.path}")

    @staticmethod
    def _absolute(topic: str) -> str:
        return topic if topic.startswith("/") else "/" + topic

    def wanted(self, topic: str) -> bool:
        if any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.exclude):
            return False
        if self.patterns is not None:
            return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.patterns)
        return self.include_hidden or not is_hidden(topic)

    # ---- discovery -----------------------------------------------------------------------
    def discover(self) -> None:
        """Subscribe to new topics that have publishers; weaken a subscription a new publisher needs."""
        with self._graph_lock:
            if self._closed:
                return
            for topic, types in self.get_topic_names_and_types():
                if topic in self._skipped or not self.wanted(topic):
                    continue
                publishers = self.get_publishers_info_by_topic(topic)
                if not publishers:
                    continue  # wait for a publisher: its QoS decides ours
                recorded = self._recorded.get(topic)
                try:
                    if recorded is None:
                        self._start(topic, types, publishers)
                    else:
                        self._maybe_weaken(topic, recorded, publishers)
                except Exception as error:  # one odd topic must not stop the recording
                    self._skipped.add(topic)
                    self.get_logger().warning(f"not recording {topic}: {error}")

    def _start(self, topic: str, types: list[str], publishers) -> None:
        type_name = types[0]
        if len(types) > 1:
            self.get_logger().warning(f"{topic} has several types {types}; recording {type_name}")
        msg_type = message_class(type_name)
        definition = message_definition(type_name)
        reliable, transient_local, depth = offered_qos(publishers)
        metadata = {RELIABILITY_KEY: "reliable" if reliable else "best_effort",
                    DURABILITY_KEY: "transient_local" if transient_local else "volatile"}
        if depth > 0:  # Fast DDS does not tell the history depth of remote publishers (reads 0)
            metadata[DEPTH_KEY] = str(depth)
        channel_id = self.writer.add_topic(topic, type_name, metadata, definition)
        subscription = self._subscribe(topic, msg_type, channel_id, reliable, transient_local)
        self._recorded[topic] = _Recorded(type_name, channel_id, reliable, transient_local, subscription)
        self.get_logger().info(f"recording {topic} [{type_name}] "
                               f"({metadata[RELIABILITY_KEY]}, {metadata[DURABILITY_KEY]})")

    def _maybe_weaken(self, topic: str, recorded: _Recorded, publishers) -> None:
        reliable, transient_local, _depth = offered_qos(publishers)
        if (reliable or not recorded.reliable) and (transient_local or not recorded.transient_local):
            return
        # A new publisher offers less than we asked for: it would never match. Re-subscribe with
        # what everyone offers (the channel stays the same; its metadata keeps the first QoS), and
        # volatile: a transient-local subscription would receive the latched messages again.
        self.destroy_subscription(recorded.subscription)
        recorded.reliable = recorded.reliable and reliable
        recorded.transient_local = False
        recorded.subscription = self._subscribe(topic, message_class(recorded.type_name), recorded.channel_id,
                                                recorded.reliable, recorded.transient_local)
        self.get_logger().info(f"{topic}: a publisher offers less; now subscribed "
                               f"{'reliable' if recorded.reliable else 'best-effort'}, "
                               f"{'transient-local' if recorded.transient_local else 'volatile'}")

    def _subscribe(self, topic: str, msg_type: type, channel_id: int, reliable: bool, transient_local: bool):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=RECORD_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE)

        def on_message(data: bytes, info) -> None:
            self._write(channel_id, data, info)

        # No QoS event handlers: an incompatible publisher is handled by discover() (and rclpy's
        # default handler would only log it, and outlive a re-created subscription).
        return self.create_subscription(msg_type, topic, on_message, qos, callback_group=self._callbacks, raw=True,
                                        event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False))

    # ---- writing -------------------------------------------------------------------------
    def _write(self, channel_id: int, data: bytes, info) -> None:
        log_time = self.get_clock().now().nanoseconds
        source = info.get("source_timestamp", 0) if isinstance(info, dict) else 0
        self.writer.write(channel_id, data, log_time, source or log_time)

    @property
    def recorded_topics(self) -> dict[str, str]:
        """Topic -> type of every topic subscribed so far."""
        with self._graph_lock:
            return {topic: r.type_name for topic, r in self._recorded.items()}

    def publisher_count(self, topic: str) -> int:
        """Publishers matched by our subscription to `topic` (0 when not subscribed)."""
        with self._graph_lock:
            recorded = self._recorded.get(topic)
            return recorded.subscription.get_publisher_count() if recorded is not None else 0

    @property
    def counts(self) -> dict[str, int]:
        return self.writer.counts

    def close(self) -> dict[str, int]:
        """Stop recording and finalise the file (summary with message counts). Idempotent; safe while
        executor threads still deliver messages (those arriving later are dropped)."""
        with self._graph_lock:
            if not self._closed:
                self._closed = True
                self._timer.cancel()
        counts = self.writer.close()
        return counts


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluorosam record",
                                     description="Record ROS 2 topics into an MCAP file (Foxglove, mcap, "
                                                 "ros2 bag read it) until Ctrl-C or --duration.")
    parser.add_argument("--out", type=Path, required=True, help="the .mcap file to write")
    parser.add_argument("--topics", nargs="+", default=None,
                        help="record only these topics (shell patterns allowed; default: all)")
    parser.add_argument("--exclude", nargs="+", default=[], help="never record these (shell patterns allowed)")
    parser.add_argument("--include-hidden", action="store_true", help="also hidden topics (e.g. action internals)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    args = parser.parse_args(argv)

    configure_ros_environment()
    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init()
    recorder = None
    executor = MultiThreadedExecutor(num_threads=2)
    try:
        recorder = TopicRecorder(args.out, topics=args.topics, exclude=args.exclude,
                                 include_hidden=args.include_hidden, compression=args.compression)
        executor.add_node(recorder)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if recorder is not None:
            counts = recorder.close()
            print(f"wrote {recorder.path}: {sum(counts.values())} messages on {len(counts)} topics")
            for topic, count in sorted(counts.items()):
                print(f"  {topic:<40} {count}")
        executor.shutdown(timeout_sec=1.0)
        if recorder is not None:
            recorder.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
