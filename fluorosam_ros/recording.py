"""MCAP recordings of ROS 2 topics, in plain Python (no rclpy import at module import time).

A recording follows the MCAP `ros2` profile, so `mcap_ros2`, Foxglove and `ros2 bag` read it:
one channel per topic with message encoding "cdr" (the serialized bytes as they came off the
wire) and a schema per type with encoding "ros2msg" named like "sensor_msgs/msg/Image". The
schema data is the type's full concatenated definition: its own .msg text, then every type it
depends on (transitively) as

    ================================================================================
    MSG: std_msgs/Header
    <text of std_msgs/msg/Header.msg>

Channel metadata records the QoS the publishers offered when recording started ("reliability":
reliable | best_effort, "durability": transient_local | volatile, "history_depth"), so that a
replay publishes each topic the way it was published.

Here: the schema builder (`message_definition`), the thread-safe writer the recorder node uses
(`RecordingWriter`) and the readers the demo and the tests use (`topic_counts`, `read_messages`,
`topic_info`, `iter_raw`).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

PROFILE = "ros2"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
SEPARATOR = "=" * 80

PACKAGE_ROOT = Path(__file__).resolve().parents[1]

PRIMITIVE_TYPES = frozenset({
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
})
_ARRAY_SUFFIX = re.compile(r"\[[^\]]*\]$")

# channel metadata keys (ours; rosbag2 writes "offered_qos_profiles", which iter_raw also reads)
RELIABILITY_KEY = "reliability"
DURABILITY_KEY = "durability"
DEPTH_KEY = "history_depth"


class DefinitionNotFound(LookupError):
    """No .msg definition for a type (or not a message type at all, e.g. an action's internals)."""


# ---- types and their definitions ---------------------------------------------------------
def split_type(type_name: str) -> tuple[str, str, str]:
    """'sensor_msgs/msg/Image' or 'sensor_msgs/Image' -> ('sensor_msgs', 'msg', 'Image')."""
    parts = type_name.strip().strip("/").split("/")
    if len(parts) == 2:
        return parts[0], "msg", parts[1]
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], parts[2]
    raise ValueError(f"not a ROS 2 type name: {type_name!r} (expected 'package/msg/Type')")


def _share_prefixes() -> list[Path]:
    """Install prefixes to search for share/<package>: AMENT_PREFIX_PATH, then this environment."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes += [sys.prefix, os.environ.get("VIRTUAL_ENV", "")]
    seen, result = set(), []
    for prefix in prefixes:
        if prefix and prefix not in seen:
            seen.add(prefix)
            result.append(Path(prefix))
    return result


@functools.lru_cache(maxsize=None)
def msg_file(package: str, name: str) -> Path:
    """The installed `<package>/msg/<name>.msg` (our own package falls back to the source tree)."""
    for prefix in _share_prefixes():
        candidate = prefix / "share" / package / "msg" / f"{name}.msg"
        if candidate.is_file():
            return candidate
    if package == "fluorosam_ros" and (PACKAGE_ROOT / "msg" / f"{name}.msg").is_file():
        return PACKAGE_ROOT / "msg" / f"{name}.msg"
    raise DefinitionNotFound(f"no definition for {package}/msg/{name}: {name}.msg is not in share/{package}/msg "
                             f"under {[str(p) for p in _share_prefixes()]}")


def field_types(text: str, package: str) -> list[str]:
    """The non-primitive types ('pkg/Type') that the fields of a .msg text use, in order."""
    types: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()  # a '#' inside a string constant only cuts its value
        if not line:
            continue
        token = line.split()[0]
        base = _ARRAY_SUFFIX.sub("", token).split("<=", 1)[0]  # Type[], Type[3], Type[<=3], string<=8
        if base in PRIMITIVE_TYPES:
            continue
        parts = base.split("/")
        name = f"{package}/{parts[0]}" if len(parts) == 1 else f"{parts[0]}/{parts[-1]}"
        if name not in types:
            types.append(name)
    return types


@functools.lru_cache(maxsize=None)
def message_definition(type_name: str) -> str:
    """The full concatenated ros2msg definition of a message type (the MCAP ros2 convention).

    The type's own .msg text comes first, then each dependency once, breadth first, after a line of
    80 '=' and a 'MSG: pkg/Type' line. Field types without a package resolve to the package of the
    definition they appear in, as in rosidl.
    """
    package, kind, name = split_type(type_name)
    if kind != "msg":
        raise DefinitionNotFound(f"{type_name}: only message types (pkg/msg/Type) have a ros2msg definition")
    main = msg_file(package, name).read_text(encoding="utf-8").rstrip() + "\n"
    sections = [main]
    seen = {f"{package}/{name}"}
    pending = deque(field_types(main, package))
    while pending:
        dependency = pending.popleft()
        if dependency in seen:
            continue
        seen.add(dependency)
        dep_package, dep_name = dependency.split("/")
        text = msg_file(dep_package, dep_name).read_text(encoding="utf-8").rstrip() + "\n"
        sections.append(f"{SEPARATOR}\nMSG: {dependency}\n{text}")
        pending.extend(field_types(text, dep_package))
    return "".join(sections)


def message_class(type_name: str) -> type:
    """The generated Python class of a type ('sensor_msgs/msg/Image' -> sensor_msgs.msg.Image)."""
    package, kind, name = split_type(type_name)
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as error:
        raise LookupError(f"cannot import the Python class of {type_name}: {error}") from error


# ---- writing -----------------------------------------------------------------------------
class RecordingWriter:
    """One MCAP file with ROS 2 encoding. Every method may be called from any thread."""

    def __init__(self, path: str | Path, compression: str = "zstd", chunk_size: int = 1 << 20) -> None:
        from mcap.writer import CompressionType, Writer

        compressions = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in compressions:
            raise ValueError(f"compression must be one of {sorted(compressions)}, got {compression!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._stream = open(self.path, "wb")
        self._writer = Writer(self._stream, chunk_size=chunk_size, compression=compressions[compression])
        self._writer.start(profile=PROFILE, library="fluorosam_ros recorder")
        self._schemas: dict[str, int] = {}
        self._channels: dict[int, str] = {}
        self._sequence: dict[int, int] = {}
        self._counts: dict[str, int] = {}
        self.closed = False

    def add_topic(self, topic: str, type_name: str, metadata: dict[str, str] | None = None,
                  definition: str | None = None) -> int:
        """Register a topic (and its type's schema, once); returns the channel id for `write`."""
        definition = message_definition(type_name) if definition is None else definition
        with self._lock:
            if self.closed:
                raise RuntimeError(f"{self.path} is closed")
            schema_id = self._schemas.get(type_name)
            if schema_id is None:
                schema_id = self._writer.register_schema(type_name, SCHEMA_ENCODING, definition.encode("utf-8"))
                self._schemas[type_name] = schema_id
            channel_id = self._writer.register_channel(topic, MESSAGE_ENCODING, schema_id,
                                                       {k: str(v) for k, v in (metadata or {}).items()})
            self._channels[channel_id] = topic
            self._sequence[channel_id] = 0
            self._counts.setdefault(topic, 0)
            return channel_id

    def write(self, channel_id: int, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> bool:
        """Append one serialized message; False (and nothing written) once the file is closed."""
        with self._lock:
            if self.closed:
                return False
            sequence = self._sequence[channel_id] = (self._sequence[channel_id] + 1) & 0xFFFFFFFF
            self._writer.add_message(channel_id, log_time=int(log_time_ns), data=bytes(data),
                                     publish_time=int(log_time_ns if publish_time_ns is None else publish_time_ns),
                                     sequence=sequence)
            self._counts[self._channels[channel_id]] += 1
            return True

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> dict[str, int]:
        """Write the summary (schemas, channels, statistics with message counts, indexes) and close.
        Idempotent; returns the messages written per topic."""
        with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    self._writer.finish()
                finally:
                    self._stream.close()
            return dict(self._counts)


# ---- reading -----------------------------------------------------------------------------
@dataclass
class TopicInfo:
    topic: str
    type_name: str
    count: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    def offered_qos(self) -> tuple[str, str, int]:
        """(reliability, durability, depth) the topic was published with; '' where unknown."""
        meta = self.metadata
        if RELIABILITY_KEY in meta or DURABILITY_KEY in meta:
            try:
                depth = int(meta.get(DEPTH_KEY, "0"))
            except ValueError:
                depth = 0
            return meta.get(RELIABILITY_KEY, ""), meta.get(DURABILITY_KEY, ""), depth
        return _rosbag2_qos(meta.get("offered_qos_profiles", ""))


def _rosbag2_qos(text: str) -> tuple[str, str, int]:
    """Read rosbag2's offered_qos_profiles (YAML list; enum numbers or names) into our terms."""
    if not text:
        return "", "", 0
    try:
        import yaml

        profiles = yaml.safe_load(text) or []
        names = {1: "reliable", 2: "best_effort"}, {1: "transient_local", 2: "volatile"}
        reliabilities = {names[0].get(p.get("reliability"), str(p.get("reliability", "")).lower()) for p in profiles}
        durabilities = {names[1].get(p.get("durability"), str(p.get("durability", "")).lower()) for p in profiles}
        depth = max(int(p.get("depth", 0) or 0) for p in profiles) if profiles else 0
    except Exception:  # someone else's metadata: fall back to the defaults
        return "", "", 0
    reliability = "best_effort" if "best_effort" in reliabilities else ("reliable" if reliabilities else "")
    durability = "volatile" if "volatile" in durabilities else ("transient_local" if durabilities else "")
    return reliability, durability, depth


def _open_reader(stream):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    return make_reader(stream, decoder_factories=[DecoderFactory()])


def _summary(reader):
    from mcap.exceptions import McapError

    try:
        return reader.get_summary()
    except (McapError, OSError, ValueError):  # an unfinished recording has no (readable) summary
        return None


def _iter_messages(stream, topics: list[str] | None, log_time_order: bool = True):
    """(schema, channel, message) from an open recording. A file that was not closed (the recorder
    was killed) has no summary and ends mid-record: read its complete chunks linearly instead."""
    from mcap.exceptions import McapError
    from mcap.reader import NonSeekingReader

    reader = _open_reader(stream)
    if _summary(reader) is not None:
        yield from reader.iter_messages(topics=topics, log_time_order=log_time_order)
        return
    stream.seek(0)
    found = []
    try:
        for item in NonSeekingReader(stream).iter_messages(topics=topics, log_time_order=False):
            if log_time_order:
                found.append(item)
            else:
                yield item
    except McapError:  # the cut-off end
        pass
    yield from sorted(found, key=lambda item: item[2].log_time)


def topic_info(path: str | Path) -> dict[str, TopicInfo]:
    """Topic -> TopicInfo (type, message count, channel metadata), from the file's summary (or a scan
    of its messages when it was not closed cleanly)."""
    with open(path, "rb") as stream:
        summary = _summary(_open_reader(stream))
        infos: dict[str, TopicInfo] = {}
        if summary is not None and summary.statistics is not None:
            for channel_id, channel in summary.channels.items():
                schema = summary.schemas.get(channel.schema_id)
                info = infos.setdefault(channel.topic, TopicInfo(channel.topic, schema.name if schema else "",
                                                                 0, dict(channel.metadata)))
                info.count += summary.statistics.channel_message_counts.get(channel_id, 0)
            return infos
        stream.seek(0)
        for schema, channel, _message in _iter_messages(stream, None, log_time_order=False):
            info = infos.setdefault(channel.topic, TopicInfo(channel.topic, schema.name if schema else "",
                                                             0, dict(channel.metadata)))
            info.count += 1
        return infos


def topic_counts(path: str | Path) -> dict[str, int]:
    """Topic -> number of messages recorded."""
    return {topic: info.count for topic, info in topic_info(path).items()}


@dataclass(frozen=True)
class RawMessage:
    topic: str
    type_name: str
    data: bytes
    log_time_ns: int
    publish_time_ns: int


def iter_raw(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
    """The serialized messages in log-time order, undecoded."""
    wanted = list(topics) if topics is not None else None
    with open(path, "rb") as stream:
        for schema, channel, message in _iter_messages(stream, wanted):
            yield RawMessage(channel.topic, schema.name if schema else "", bytes(message.data),
                             message.log_time, message.publish_time)


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, object, int]]:
    """(topic, decoded message, log_time_ns) in log-time order, decoded by the mcap_ros2 decoder from
    the schema stored in the file (attribute access like the generated classes: msg.header.stamp).
    Messages of channels that are not CDR with a ros2msg schema are skipped."""
    from mcap_ros2.decoder import DecoderFactory

    wanted = list(topics) if topics is not None else None
    factory = DecoderFactory()
    with open(path, "rb") as stream:
        for schema, channel, message in _iter_messages(stream, wanted):
            decoder = factory.decoder_for(channel.message_encoding, schema)
            if decoder is not None:
                yield channel.topic, decoder(message.data), message.log_time
