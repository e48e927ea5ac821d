"""The running system under bad input, faults and load: what the ROS reliability tests and
`bench/bench_reliability.py` do to it, each outcome counted into a `Ledger`.

Imports rclpy (unlike the rest of `fluorosam_ros.reliability`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from fluorosam_ros.action import AcquireView, MoveCArm
from fluorosam_ros.launch_runner import Launcher, apply_overrides, load_launch_file
from fluorosam_ros.msg import AudioChunk
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Collimation as CollimationMsg
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.nodes.commander import CArmCommander
from fluorosam_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, STATE_QOS
from fluorosam_ros.nodes.conversions import image_to_msg

from .ledger import ACCEPTED, CRASHED, REFUSED, Ledger

REPO_ROOT = Path(__file__).resolve().parents[2]
NAN, INF = math.nan, math.inf


# ---- starting the system -------------------------------------------------------------------
@contextlib.contextmanager
def launched_system(launch_file: str, log_dir: Path, overrides: Iterable[tuple[str | None, str]] = (),
                    **arguments):
    """Run `launch/<launch_file>` (every node's output in `log_dir/<node>.log`), with parameter
    overrides [(node or None, "name:=value")] on top of the launch file's values."""
    specs = load_launch_file(REPO_ROOT / "launch" / launch_file, {k: str(v) for k, v in arguments.items()})
    apply_overrides(specs, list(overrides))
    for spec in specs:
        spec.output = "log"
    launcher = Launcher(specs, log_dir=Path(log_dir))
    launcher.start()
    try:
        yield launcher
    finally:
        launcher.stop()


def read_logs(log_dir: Path, tail: int = 3000) -> str:
    """The end of every node's log, long lines cut (the bad inputs are in them)."""
    def cut(text: str) -> str:
        return "\n".join(line if len(line) <= 300 else line[:300] + " [...]" for line in text.splitlines())

    return "\n".join(f"--- {p.name}\n{cut(p.read_text(errors='replace'))[-tail:]}"
                     for p in sorted(Path(log_dir).glob("*.log")))


def dead_nodes(*launchers: Launcher) -> list[str]:
    return [name for launcher in launchers for name, process in launcher.processes.items()
            if process.poll() is not None]


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- the probe: a client that also publishes what the nodes subscribe to -------------------
class Probe(CArmCommander):
    """CArmCommander plus publishers on the nodes' input topics and listeners on their outputs."""

    def __init__(self, name: str = "reliability_probe") -> None:
        super().__init__(name)
        self.image_pub = self.create_publisher(Image, "/carm/image", SENSOR_QOS)
        self.image_state_pub = self.create_publisher(CArmStateMsg, "/carm/image_state", RELIABLE_QOS)
        self.audio_pub = self.create_publisher(AudioChunk, "/command/audio", RELIABLE_QOS)
        self.intents: list[IntentMsg] = []
        self.heard: list[str] = []
        self.diagnostics: list[tuple[float, dict[str, dict[str, str]]]] = []
        self.targets: list[CArmStateMsg] = []
        self.image_states: list[tuple[float, CArmStateMsg]] = []
        self.states: list[tuple[float, CArmStateMsg]] = []
        self.create_subscription(IntentMsg, "/command/intent", self.intents.append, RELIABLE_QOS)
        self.create_subscription(String, "/command/heard", lambda m: self.heard.append(m.data), RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE_QOS)
        self.create_subscription(CArmStateMsg, "/plan/target_state", self.targets.append, STATE_QOS)
        self.record_states = False

    @classmethod
    def create(cls, name: str = "reliability_probe") -> "Probe":
        if not rclpy.ok():
            rclpy.init()
        return cls(name)

    def stop_image_subscription(self) -> None:
        """Stop taking /carm/image (under load, copying every frame here would steal CPU)."""
        for subscription in list(self.subscriptions):
            if subscription.topic_name == "/carm/image":
                self.destroy_subscription(subscription)

    def _on_state(self, msg: CArmStateMsg) -> None:  # overrides CArmCommander's: keeps a history
        super()._on_state(msg)
        if self.record_states:
            self.states.append((time.monotonic(), msg))

    def _on_image_state(self, msg: CArmStateMsg) -> None:
        super()._on_image_state(msg)
        self.image_states.append((time.monotonic(), msg))
        del self.image_states[:-5000]

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics.append((time.monotonic(), {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}))
        del self.diagnostics[:-2000]

    def now_stamp(self):
        return self.get_clock().now().to_msg()

    def settled_state(self, timeout_s: float = 30.0) -> CArmStateMsg | None:
        self._spin_until(lambda: self.state is not None and not self.state.moving, timeout_s)
        self.spin_for(0.3)
        return self.state

    def wait_for_subscribers(self, publisher, count: int = 1, timeout_s: float = 30.0) -> bool:
        return self._spin_until(lambda: publisher.get_subscription_count() >= count, timeout_s)

    def send_goal(self, goal: MoveCArm.Goal, timeout_s: float = 60.0):
        handle = self._wait_future(self.move_client.send_goal_async(goal), 10.0)
        if handle is None or not handle.accepted:
            return None
        wrapped = self._wait_future(handle.get_result_async(), timeout_s)
        return wrapped.result if wrapped is not None else None

    def view(self, goal: AcquireView.Goal, timeout_s: float = 120.0):
        if not self.view_client.wait_for_server(timeout_sec=30.0):
            return None
        handle = self._wait_future(self.view_client.send_goal_async(goal), 10.0)
        if handle is None or not handle.accepted:
            return None
        wrapped = self._wait_future(handle.get_result_async(), timeout_s)
        return wrapped.result if wrapped is not None else None

    def text(self, text: str, timeout_s: float = 30.0) -> IntentMsg | None:
        self.wait_for_subscribers(self.text_pub, 1, timeout_s)  # volatile: published before a match = lost
        before = len(self.intents)
        self.text_pub.publish(String(data=text))
        if self._spin_until(lambda: len(self.intents) > before, timeout_s):
            return self.intents[before]
        return None

    def intent(self, tag: str, timeout_s: float = 60.0, **fields):
        """Publish an Intent (source_text=`tag` unless given) and wait for its /plan/events answer."""
        fields.setdefault("source_text", tag)
        fields.setdefault("amount", NAN)
        fields.setdefault("source", "text")
        msg = IntentMsg(**fields)
        self.wait_for_subscribers(self.intent_pub, 1, timeout_s)
        before = len(self.events)
        self.intent_pub.publish(msg)
        key = fields["source_text"][:500]
        self._spin_until(lambda: any(e.source_text == key for e in self.events[before:]), timeout_s)
        return next((e for e in self.events[before:] if e.source_text == key), None)

    def latest_segmented_size(self, timeout_s: float = 60.0) -> tuple[int, int] | None:
        """(width, height) of the frame /segment uses as the latest, or None without an answer."""
        response = self.segment(text="spine", timeout_s=timeout_s)
        if response is None or not response.success:
            return None
        return int(response.result.mask.width), int(response.result.mask.height)

    def segmentation_counters(self) -> tuple[float, dict[str, str], int] | None:
        """(time received, segmentation_node's diagnostics values, index in self.diagnostics) of
        the newest report."""
        for index in range(len(self.diagnostics) - 1, -1, -1):
            received, statuses = self.diagnostics[index]
            if "segmentation_node" in statuses:
                return received, statuses["segmentation_node"], index
        return None


def not_up(probe: "Probe", log_dir: Path, command_node: bool = False) -> str:
    """"" when carm_sim, planner_node and segmentation_node (and command_node) answer; else
    which did not, with the nodes' logs."""
    if not probe.wait_until_ready(timeout_s=120) or probe.wait_for_frame(timeout_s=60) is None:
        return "carm_sim did not come up:\n" + read_logs(log_dir)
    if not probe.view_client.wait_for_server(timeout_sec=180) \
            or not probe.segment_client.wait_for_service(timeout_sec=180):
        return "planner_node or segmentation_node did not come up:\n" + read_logs(log_dir)
    if command_node and probe.text("stop", timeout_s=120) is None:
        return "command_node did not come up:\n" + read_logs(log_dir)
    return ""


def segments_a_new_frame(probe: "Probe") -> bool:
    """A restarted segmentation_node has no frame until the next one (carm_sim publishes frames
    on request; the planner sends its frame with each request): ask for one, then segment it."""
    if not probe.segment_client.service_is_ready():
        return False
    probe.acquire(timeout_s=10.0)
    probe.spin_for(0.5)
    response = probe.segment(text="spine", timeout_s=10.0)
    return response is not None and response.success


def test_frame(size: int, stamp, rng: np.random.Generator | None = None, frame_id: str = "carm_camera") -> Image:
    rng = rng or np.random.default_rng(0)
    pixels = (rng.random((size, size)) * 60000).astype(np.uint16)
    return image_to_msg(pixels, "mono16", Header(stamp=stamp, frame_id=frame_id))


# ---- bad input at every topic ----------------------------------------------------------------
class BadInputs:
    """Malformed messages at every topic of the running system; each outcome into the ledger.
    A node that dies while handling one counts as a crash of that input."""

    MARKER = 96  # px: a valid frame of a size carm_sim never sends, to see what /segment takes as latest

    def __init__(self, probe: Probe, launcher: Launcher, ledger: Ledger, log: Callable[[str], None] = print):
        self.probe, self.launcher, self.ledger, self.log = probe, launcher, ledger, log
        self._tag = 0

    def _tagged(self, what: str) -> str:
        self._tag += 1
        return f"reliability-{self._tag}: {what}"

    def _record(self, boundary: str, kind: str, outcome: str, detail: str, nodes: Iterable[str]) -> str:
        dead = [n for n in nodes if n in self.launcher.processes and self.launcher.processes[n].poll() is not None]
        if dead:
            outcome, detail = CRASHED, f"{', '.join(dead)} died ({detail})"
        self.ledger.bad_input(boundary, kind, outcome, detail)
        return outcome

    def all(self) -> None:
        from rclpy.logging import LoggingSeverity

        logger = self.probe.get_logger()
        logger.set_level(LoggingSeverity.ERROR)  # the probe hears its own bad frames: no warning each
        try:
            for group in (self.carm_move, self.segment_requests, self.carm_image, self.image_state, self.carm_state,
                          self.intents, self.command_text, self.command_audio, self.plan_view):
                started = time.monotonic()
                group()
                self.log(f"  {group.__name__}: {time.monotonic() - started:.1f} s")
        finally:
            logger.set_level(LoggingSeverity.INFO)

    # -- /carm/move -----------------------------------------------------------------------
    def carm_move(self) -> None:
        boundary = "/carm/move (carm_sim)"
        state = self.probe.settled_state()
        iso, alpha, beta = [float(v) for v in state.isocenter_mm], state.alpha_deg, state.beta_deg
        width, height = float(state.sensor_width_px), float(state.sensor_height_px)

        def collimation(*values):
            return CollimationMsg(enabled=True, col_min_px=values[0], row_min_px=values[1], col_max_px=values[2],
                                  row_max_px=values[3], iris_radius_px=values[4] if len(values) > 4 else 0.0)

        cases = [
            ("NaN/inf pose", {"alpha": NAN}), ("NaN/inf pose", {"beta": -INF}),
            ("NaN/inf pose", {"iso": [INF, iso[1], iso[2]]}),
            ("alpha beyond limits", {"alpha": state.max_alpha_deg + 50.0}),
            ("alpha beyond limits", {"alpha": state.min_alpha_deg - 0.5}),
            ("beta beyond limits", {"beta": state.max_beta_deg + 1.0}),
            ("isocenter beyond travel", {"iso": [iso[0] + 1e5, iso[1], iso[2]]}),
            ("collimation outside the detector", {"collimation": collimation(-10.0, 0.0, width, height)}),
            ("collimation outside the detector", {"collimation": collimation(0.0, 0.0, 3 * width, height)}),
            ("collimation NaN / empty / negative iris", {"collimation": collimation(NAN, 0.0, width, height)}),
            ("collimation NaN / empty / negative iris", {"collimation": collimation(50.0, 50.0, 40.0, 60.0)}),
            ("collimation NaN / empty / negative iris", {"collimation": collimation(1.0, 1.0, 20.0, 20.0, -3.0)}),
        ]
        for kind, change in cases:
            goal = MoveCArm.Goal(isocenter_mm=np.asarray(change.get("iso", iso), dtype=float),
                                 alpha_deg=float(change.get("alpha", alpha)), beta_deg=float(change.get("beta", beta)),
                                 set_collimation="collimation" in change, acquire=False)
            if "collimation" in change:
                goal.collimation = change["collimation"]
            result = self.probe.send_goal(goal, timeout_s=30.0)
            after = self.probe.settled_state(5.0)
            unchanged = after is not None and np.allclose(after.isocenter_mm, iso) \
                and math.isclose(after.alpha_deg, alpha) and math.isclose(after.beta_deg, beta)
            if result is None:
                outcome, detail = CRASHED, "no result"
            elif result.status == MoveCArm.Result.STATUS_REJECTED and unchanged:
                outcome, detail = REFUSED, ""
            else:
                outcome, detail = ACCEPTED, f"status {result.status}: {result.message}; pose unchanged: {unchanged}"
            self._record(boundary, kind, outcome, detail, ["carm_sim"])

    # -- /segment ---------------------------------------------------------------------------
    def segment_requests(self) -> None:
        boundary = "/segment (segmentation_node)"
        stamp = self.probe.now_stamp()

        def image(encoding="mono16", height=64, width=64, step=None, data=None, float_nan=False):
            msg = Image(header=Header(stamp=stamp), height=height, width=width, encoding=encoding,
                        step=step if step is not None else width * 2)
            if float_nan:
                pixels = np.zeros((height, width), np.float32)
                pixels[3, 5] = np.nan
                msg = image_to_msg(pixels, "32FC1", Header(stamp=stamp))
            else:
                msg.data = data if data is not None else bytes(msg.step * height)
            return msg

        cases = [
            ("no prompt", {}), ("empty text", {"text": "   "}), ("10,000-character text", {"text": "x" * 10_000}),
            ("points outside the image", {"points_xy": [5000.0, 3.0], "labels": [1]}),
            ("points outside the image", {"points_xy": [-1.0, 3.0], "labels": [1]}),
            ("NaN/inf points", {"points_xy": [NAN, 3.0], "labels": [1]}),
            ("NaN/inf points", {"points_xy": [3.0, INF], "labels": [1]}),
            ("points and labels disagree", {"points_xy": [3.0, 3.0, 4.0], "labels": [1]}),
            ("labels not 0/1", {"points_xy": [3.0, 3.0], "labels": [7]}),
            ("image: wrong encoding", {"text": "heart", "image": image(encoding="bgr42")}),
            ("image: step/data mismatch", {"text": "heart", "image": image(data=bytes(10))}),
            ("image: empty", {"text": "heart", "image": Image()}),
            ("image: NaN float pixels", {"text": "heart", "image": image(float_nan=True)}),
            ("image: smaller than 8x8", {"text": "heart", "image": image(height=4, width=4)}),
            ("image: huge size", {"text": "heart", "image": image(height=60000, width=60000, step=120000, data=bytes(64))}),
        ]
        for kind, kwargs in cases:
            response = self.probe.segment(**kwargs, timeout_s=60.0)
            if response is None:
                outcome, detail = CRASHED, "no answer"
            elif response.success:
                outcome, detail = ACCEPTED, response.message
            else:
                outcome, detail = REFUSED, ""
            self._record(boundary, kind, outcome, detail, ["segmentation_node"])

    # -- /carm/image --------------------------------------------------------------------------
    def _publish_marker(self, stamp=None) -> bool:
        """A valid MARKER-sized frame that /segment must then take as the latest."""
        for _ in range(3):
            self.probe.image_pub.publish(test_frame(self.MARKER, stamp or self.probe.now_stamp()))
            self.probe.spin_for(0.3)
            if self.probe.latest_segmented_size() == (self.MARKER, self.MARKER):
                return True
        return False

    def carm_image(self) -> None:
        boundary = "/carm/image (segmentation_node, planner_node)"
        self.probe.wait_for_subscribers(self.probe.image_pub, 2)
        if not self._publish_marker():
            self.ledger.note("/carm/image: the marker frame never became the latest; group skipped")
            return
        stamp = self.probe.now_stamp()
        good = test_frame(64, stamp)

        def variant(**changes) -> Image:
            msg = Image(header=good.header, height=good.height, width=good.width, encoding=good.encoding,
                        is_bigendian=0, step=good.step)
            msg.data = bytes(good.data)
            for key, value in changes.items():
                setattr(msg, key, value)
            return msg

        nan_image = image_to_msg(np.full((64, 64), 0.5, np.float32), "32FC1", Header(stamp=stamp))
        pixels = np.full((64, 64), 0.5, np.float32)
        pixels[10, 10] = np.inf
        inf_image = image_to_msg(pixels, "32FC1", Header(stamp=stamp))
        nan_data = bytearray(nan_image.data)
        nan_data[0:4] = np.float32(np.nan).tobytes()
        nan_image.data = bytes(nan_data)
        cases = [("wrong encoding", variant(encoding="bgr42")), ("wrong encoding", variant(encoding="")),
                 ("step/data mismatch", variant(data=bytes(100))), ("step/data mismatch", variant(step=3)),
                 ("empty", variant(height=0, data=b"")),
                 ("smaller than the model takes (4x4)", image_to_msg(np.zeros((4, 4), np.uint8), "mono8",
                                                                       Header(stamp=stamp))),
                 ("NaN/inf float image", nan_image),
                 ("NaN/inf float image", inf_image),
                 ("huge size", variant(height=100_000, width=100_000, step=200_000, data=bytes(16)))]
        for kind, msg in cases:
            for _ in range(3):
                self.probe.image_pub.publish(msg)
                self.probe.spin_for(0.05)
            self.probe.spin_for(0.3)
            size = self.probe.latest_segmented_size()
            if size is None:
                outcome, detail = CRASHED, "/segment did not answer on the latest frame"
            elif size == (self.MARKER, self.MARKER):
                outcome, detail = REFUSED, ""
            else:
                outcome, detail = ACCEPTED, f"the bad frame became the latest ({size})"
            self._record(boundary, kind, outcome, detail, ["segmentation_node", "planner_node"])
        self.probe.acquire()  # carm_sim's own frame is the latest again

    # -- /carm/image_state ---------------------------------------------------------------------
    def image_state(self) -> None:
        boundary = "/carm/image_state (segmentation_node, planner_node)"
        self.probe.settled_state()
        base = self.probe.state

        def bad(kind: str) -> CArmStateMsg:
            msg = CArmStateMsg()
            for name in msg.get_fields_and_field_types():
                setattr(msg, name, getattr(base, name))
            msg.collimation = CollimationMsg(enabled=False)
            if kind == "NaN/inf pose":
                msg.alpha_deg = NAN
            elif kind == "NaN/inf projection":
                values = list(base.index_from_world)
                values[3] = INF
                msg.index_from_world = values
            elif kind == "NaN/inf collimation":
                msg.collimation = CollimationMsg(enabled=True, col_min_px=NAN, row_min_px=0.0, col_max_px=10.0,
                                                 row_max_px=10.0)
            else:  # collimation outside its detector
                msg.collimation = CollimationMsg(enabled=True, col_min_px=-50.0, row_min_px=0.0,
                                                 col_max_px=float(base.sensor_width_px) * 4, row_max_px=10.0)
            return msg

        for kind in ("NaN/inf pose", "NaN/inf projection", "NaN/inf collimation", "collimation outside the detector"):
            stamp = self.probe.now_stamp()
            msg = bad(kind)
            msg.header = Header(stamp=stamp, frame_id="world")
            self.probe.image_state_pub.publish(msg)
            self.probe.spin_for(0.3)
            delivered = self._publish_marker(stamp)
            response = self.probe.segment(text="spine")
            if response is None or not delivered:
                outcome, detail = CRASHED, "no answer from /segment" if response is None else "frame not delivered"
            elif not response.success:
                outcome, detail = REFUSED, ""
            else:
                paired = response.result.carm_state.header.stamp == stamp
                outcome, detail = (ACCEPTED, "the bad state was paired with the frame") if paired else (REFUSED, "")
            self._record(boundary, kind, outcome, detail, ["segmentation_node", "planner_node"])
        self.probe.acquire()

    # -- /carm/state ---------------------------------------------------------------------------
    def carm_state(self) -> None:
        """The planner reads the device and the pose from /carm/state: malformed ones are ignored."""
        boundary = "/carm/state (planner_node)"
        base = self.probe.settled_state()
        publisher = self.probe.create_publisher(CArmStateMsg, "/carm/state", STATE_QOS)
        self.probe.wait_for_subscribers(publisher, 2)
        for kind in ("NaN/inf pose", "empty sensor", "projection not ours", "collimation outside the detector"):
            msg = CArmStateMsg()
            for name in msg.get_fields_and_field_types():
                setattr(msg, name, getattr(base, name))
            msg.header = Header(stamp=self.probe.now_stamp(), frame_id="world")
            if kind == "NaN/inf pose":
                msg.isocenter_mm = [NAN, 0.0, 0.0]
            elif kind == "empty sensor":
                msg.sensor_width_px = 0
            elif kind == "projection not ours":
                msg.index_from_world = [float(v) for v in np.arange(12)]
            else:
                msg.collimation = CollimationMsg(enabled=True, col_min_px=-5.0, row_min_px=0.0, col_max_px=1e6,
                                                 row_max_px=10.0)
            publisher.publish(msg)
            self.probe.spin_for(0.5)
            self._record(boundary, kind, REFUSED, "", ["planner_node"])
        self.probe.destroy_publisher(publisher)  # its latched message must not reach a late joiner
        # the planner still knows where the C-arm is: a no-motion intent that needs the state
        event = self.probe.intent(self._tagged("where after bad states"), kind="where", structure="heart",
                                  confidence=1.0)
        if event is None or (not event.success and event.failure_reason in ("carm_unavailable", "internal_error")):
            self.ledger.note(f"/carm/state: the planner's state after the bad messages is suspect: {event}")

    # -- /command/intent ----------------------------------------------------------------------
    def intents(self) -> None:
        boundary = "/command/intent (planner_node)"
        self.probe.settled_state()
        cases = [
            ("unknown kind", {"kind": "fly"}), ("unknown kind", {"kind": ""}), ("unknown kind", {"kind": "SHOW"}),
            ("unknown kind", {"kind": "k" * 10_000}),
            ("NaN / out-of-range confidence", {"kind": "move", "direction": "left", "amount": 10.0, "unit": "mm",
                                               "confidence": NAN}),
            ("NaN / out-of-range confidence", {"kind": "rotate", "direction": "left", "confidence": -1.0}),
            ("NaN / out-of-range confidence", {"kind": "acquire", "confidence": INF}),
            ("NaN / out-of-range confidence", {"kind": "zoom", "direction": "in", "confidence": 7.5}),
            ("infinite amount", {"kind": "move", "direction": "left", "amount": INF, "unit": "mm"}),
            ("infinite amount", {"kind": "rotate", "direction": "left", "amount": -INF, "unit": "deg"}),
            ("unknown direction / view", {"kind": "move", "direction": "sideways", "amount": 5.0, "unit": "mm"}),
            ("unknown direction / view", {"kind": "tilt", "direction": "up the wall"}),
            ("unknown direction / view", {"kind": "show", "structure": "heart", "view": "from the moon"}),
            ("huge strings", {"kind": "show", "structure": "s" * 100_000, "view": "ap"}),
            ("huge strings", {"kind": "where", "structure": "w" * 100_000}),
            ("huge strings", {"kind": "collimate", "direction": "d" * 100_000}),
        ]
        for kind, fields in cases:
            fields.setdefault("confidence", 1.0)
            event = self.probe.intent(self._tagged(kind), **fields)
            if event is None:
                outcome, detail = CRASHED, "no /plan/events answer"
            elif event.success:
                outcome, detail = ACCEPTED, f"{event.kind}: {event.message[:150]}"
            else:
                outcome, detail = REFUSED, ""
            self._record(boundary, kind, outcome, detail, ["planner_node"])
        # NaN amount is the Intent's "not given": the default step, within the limits
        event = self.probe.intent(self._tagged("NaN amount"), kind="move", direction="left", amount=NAN,
                                  confidence=1.0)
        after = self.probe.settled_state()
        within = after is not None and after.min_alpha_deg <= after.alpha_deg <= after.max_alpha_deg
        if event is None:
            outcome, detail = CRASHED, "no /plan/events answer"
        else:
            outcome, detail = (REFUSED, "") if within else (ACCEPTED, "pose outside the limits")
        self._record(boundary, "NaN amount (= the default step)", outcome, detail, ["planner_node"])
        if event is not None and event.success:
            self.probe.intent(self._tagged("undo"), kind="undo", confidence=1.0)

    # -- /command/text ----------------------------------------------------------------------
    def command_text(self) -> None:
        boundary = "/command/text (command_node)"
        rng = np.random.default_rng(8)
        alphabet = [chr(c) for c in list(range(0x21, 0x7f)) + list(range(0xa1, 0x2000)) + list(range(0x4e00, 0x4f00))
                    + [0x1f600, 0x1f4a9, 0x10ffff, 0xfeff, 0x200b]]
        texts = [("10,000 characters", "show the heart " * 700), ("10,000 characters", "\u00e9" * 10_000),
                 ("empty / whitespace", ""), ("empty / whitespace", " \t\n  \u3000"),
                 ("control characters", "\x07\x1b[2J\x08 stop"), ("control characters", "\r\n\x0b\x0c")]
        for _ in range(4):
            texts.append(("random unicode", "".join(rng.choice(alphabet, size=int(rng.integers(1, 80))))))
        for _ in range(3):
            raw = bytes(rng.integers(0, 256, size=int(rng.integers(4, 60)), dtype=np.uint8))
            texts.append(("non-UTF-8 bytes (decoded with errors='replace')", raw.decode("utf-8", errors="replace")))
        for kind, text in texts:
            intent = self.probe.text(text, timeout_s=30.0)
            must_refuse = len(text) > 500 or not text.strip()
            if intent is None:
                outcome, detail = CRASHED, "no /command/intent answer"
            elif must_refuse and intent.kind != "not_understood":
                outcome, detail = ACCEPTED, f"{intent.kind} from {len(text)} characters"
            elif intent.kind not in ("show", "collimate", "move", "rotate", "tilt", "zoom", "acquire", "undo",
                                     "stop", "where", "not_understood"):
                outcome, detail = ACCEPTED, f"unknown kind {intent.kind!r}"
            else:
                outcome, detail = REFUSED, ""
            self._record(boundary, kind, outcome, detail, ["command_node"])

    # -- /command/audio ---------------------------------------------------------------------
    def command_audio(self) -> None:
        boundary = "/command/audio (command_node)"
        self.probe.wait_for_subscribers(self.probe.audio_pub, 1)
        samples = (np.sin(np.arange(1600) / 5.0) * 8000).astype(np.int16).tolist()
        cases = [("wrong sample rate", 8000, 1), ("wrong sample rate", 44100, 1), ("wrong sample rate", 0, 1),
                 ("wrong sample rate", 4_000_000_000, 1), ("not mono", 16000, 2), ("not mono", 16000, 255)]
        self.probe.spin_for(1.0)  # /command/heard answers to earlier texts arrive first
        for kind, rate, channels in cases:
            before = len(self.probe.heard)
            self.probe.audio_pub.publish(AudioChunk(header=Header(stamp=self.probe.now_stamp()), sample_rate_hz=rate,
                                                    channels=channels, samples=samples, end_of_utterance=True))
            expected = f"{rate} Hz" if kind == "wrong sample rate" else f"{channels} channels"
            self.probe._spin_until(lambda: any(expected in r for r in self.probe.heard[before:]), 15.0)
            replies = [r for r in self.probe.heard[before:] if r.startswith("refused")]
            if not replies:
                outcome, detail = CRASHED, "no /command/heard answer"
            elif any(r.startswith("refused") and expected in r for r in replies):
                outcome, detail = REFUSED, ""
            else:
                outcome, detail = ACCEPTED, replies[0][:150]
            self._record(boundary, kind, outcome, detail, ["command_node"])

    # -- /plan/view ---------------------------------------------------------------------------
    def plan_view(self) -> None:
        boundary = "/plan/view (planner_node)"
        cases = [("no / blank structure", ("", "ap", 0.0)), ("no / blank structure", ("  \t", "ap", 0.0)),
                 ("unknown structure", ("flux capacitor", "ap", 0.0)),
                 ("10,000-character structure", ("x" * 10_000, "ap", 0.0)),
                 ("unknown view", ("heart", "sideways", 0.0)), ("unknown view", ("heart", "x" * 5000, 0.0)),
                 ("NaN/inf margin", ("heart", "ap", NAN)), ("NaN/inf margin", ("heart", "ap", INF))]
        for kind, (structure, view, margin) in cases:
            before = self.probe.settled_state()
            started = time.monotonic()
            result = self.probe.view(AcquireView.Goal(structure=structure, view=view, margin_mm=margin), 120.0)
            after = self.probe.settled_state(5.0)
            moved = before is not None and after is not None and not (
                np.allclose(before.isocenter_mm, after.isocenter_mm)
                and math.isclose(before.alpha_deg, after.alpha_deg) and math.isclose(before.beta_deg, after.beta_deg))
            if result is None:
                outcome, detail = CRASHED, "no result"
            elif result.success or moved or not result.failure_reason:
                outcome, detail = ACCEPTED, f"success={result.success} moved={moved} reason={result.failure_reason!r}"
            else:
                outcome, detail = REFUSED, ""
            self._record(boundary, kind, outcome, detail, ["planner_node"])
            if time.monotonic() - started > 20:
                self.ledger.note(f"/plan/view {kind}: took {time.monotonic() - started:.0f} s to refuse")


# ---- good requests after it all --------------------------------------------------------------
@dataclass
class Checks:
    passed: dict[str, bool] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.passed[name] = bool(ok)
        self.details[name] = detail

    @property
    def ok(self) -> bool:
        return all(self.passed.values())

    def failures(self) -> dict[str, str]:
        return {k: self.details[k] for k, ok in self.passed.items() if not ok}


def served(result) -> bool:
    """A /plan/view result of a request the whole loop served: success, or the loop's own verdict
    that the view missed its centring/coverage goals (a quality figure, not a fault)."""
    return result is not None and (result.success or result.failure_reason == "off_target")


def good_requests(probe: Probe, *, plan_view: bool = True, text: bool = True, move: bool = True,
                  segment: bool = True) -> Checks:
    """Requests every node must still answer correctly."""
    checks = Checks()
    if segment:
        response = probe.segment(text="spine", timeout_s=60.0)
        checks.add("/segment spine", response is not None and response.success, response and response.message)
    if move:
        state = probe.settled_state()
        from fluorosam_ros.geometry.carm import CArmPose

        target = CArmPose(tuple(state.isocenter_mm), min(state.alpha_deg + 10.0, state.max_alpha_deg), state.beta_deg)
        outcome = probe.move_to(target, acquire=True, timeout_s=60.0)
        checks.add("/carm/move within limits", outcome.succeeded, outcome.message)
        back = probe.move_to(CArmPose(tuple(state.isocenter_mm), state.alpha_deg, state.beta_deg), acquire=True,
                             timeout_s=60.0)
        checks.add("/carm/move back", back.succeeded, back.message)
    if text:
        intent = probe.text("where is the heart", timeout_s=60.0)
        checks.add("/command/text where is the heart", intent is not None and intent.kind == "where",
                   intent and f"{intent.kind} {intent.confidence:.2f}")
    if plan_view:
        result = probe.view(AcquireView.Goal(structure="heart", view="ap"), 300.0)
        checks.add("/plan/view heart ap served", served(result),
                   result and f"success={result.success} {result.failure_reason}: {result.message}")
    return checks


# ---- faults ---------------------------------------------------------------------------------
def kill_and_restart(probe: Probe, launcher: Launcher, ledger: Ledger, name: str, check: Callable[[], bool],
                     others: Iterable[str], timeout_s: float = 180.0, down_s: float = 2.0) -> tuple[bool, float]:
    """Kill `name` hard, keep it down `down_s`, restart it; recovered when the others stayed up
    and `check()` passes again within `timeout_s`. Returns (recovered, seconds to recover)."""
    launcher.kill(name)
    probe.spin_for(down_s)
    others_alive = not [n for n in others if launcher.processes[n].poll() is not None]
    started = time.monotonic()
    launcher.restart(name)
    recovered = False
    while time.monotonic() - started < timeout_s:
        if launcher.processes[name].poll() is not None:
            break
        if check():
            recovered = True
            break
        probe.spin_for(1.0)
    seconds = time.monotonic() - started
    others_alive = others_alive and not [n for n in others if launcher.processes[n].poll() is not None]
    ledger.fault(f"kill {name}, restart", recovered and others_alive,
                 f"back in {seconds:.1f} s; other nodes {'up' if others_alive else 'DOWN'}")
    return recovered and others_alive, seconds


@dataclass
class VanishedMidMove:
    event: object            # the planner's /plan/events answer to the interrupted request
    failed_after_s: float    # from the kill to that answer
    planner_alive: bool
    served_after_restart: bool

    @property
    def clean(self) -> bool:
        return self.event is not None and not self.event.success \
            and self.event.failure_reason in ("carm_unavailable", "timeout")


def carm_vanishes_mid_move(probe: Probe, launcher: Launcher, ledger: Ledger) -> VanishedMidMove:
    """A planner request (rotate left 120 deg) whose C-arm driver is killed mid-move: it must
    fail with a reason, the planner must live, and serve again once carm_sim is back."""
    before = len(probe.events)
    probe.wait_for_subscribers(probe.intent_pub, 1)
    probe.intent_pub.publish(IntentMsg(kind="rotate", direction="left", amount=120.0, unit="deg", confidence=1.0,
                                       source="text", source_text="rotate left 120 (carm_sim will vanish)"))
    moving = probe._spin_until(lambda: probe.state is not None and probe.state.moving, 30.0)
    killed_at = time.monotonic()
    launcher.kill("carm_sim")
    probe._spin_until(lambda: any(e.kind == "rotate" for e in probe.events[before:]), 60.0)
    event = next((e for e in probe.events[before:] if e.kind == "rotate"), None)
    failed_after = time.monotonic() - killed_at
    planner_alive = launcher.processes["planner_node"].poll() is None
    launcher.restart("carm_sim")  # it comes back at its start pose
    probe.state = None
    back = probe.wait_until_ready(120.0)
    if back:
        from fluorosam_ros.geometry.carm import CArmPose

        state = probe.settled_state()
        back = probe.move_to(CArmPose(tuple(state.isocenter_mm), 10.0, 0.0), acquire=True).succeeded
    answer = probe.intent(f"acquire after the carm_sim restart {time.monotonic():.0f}", kind="acquire",
                          confidence=1.0, timeout_s=120.0)
    result = VanishedMidMove(event, failed_after, planner_alive,
                             bool(back and answer is not None and answer.success))
    ledger.fault("kill carm_sim mid-move (a planner request)", moving and result.clean and planner_alive
                 and result.served_after_restart,
                 f"request failed ({event and event.failure_reason}) {failed_after:.1f} s after the kill; planner "
                 f"{'up' if planner_alive else 'DOWN'}; served after the restart: {result.served_after_restart}")
    return result


# ---- load ------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    duration_s: float
    frames_published: int
    published_hz: float
    frames_published_measured: int   # after the warm-up, the window the counters below cover
    frames_received: int
    frames_refused: int
    frames_embedded: int
    frames_skipped: int
    max_pending: int
    latencies_ms: list[float]
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float
    commands_sent: int
    intents_received: int
    publisher: str

    @property
    def processed_hz(self) -> float:
        return self.frames_embedded / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def rss_growth(self) -> float:
        return (self.rss_end_mb - self.rss_start_mb) / self.rss_start_mb if self.rss_start_mb else math.nan

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else math.nan

    def record(self, ledger: Ledger, label: str = "") -> None:
        p = f"{label} " if label else ""
        ledger.figure(f"{p}frames published ({self.publisher})", round(self.published_hz, 1), "Hz", "30 Hz",
                      self.published_hz >= 27.0)
        ledger.figure(f"{p}after warm-up: frames published / received / embedded / superseded in the node",
                      f"{self.frames_published_measured} / {self.frames_received} / {self.frames_embedded} / "
                      f"{self.frames_skipped}")
        ledger.figure(f"{p}processed (embedded) rate", round(self.processed_hz, 2), "Hz")
        ledger.figure(f"{p}queue depth in the node (frames waiting, max)", self.max_pending, "", "<= 1",
                      self.max_pending <= 1)
        ledger.figure(f"{p}latency frame stamp -> embedded, p50", round(self.percentile(50)), "ms")
        ledger.figure(f"{p}latency frame stamp -> embedded, p99", round(self.percentile(99)), "ms")
        ledger.figure(f"{p}segmentation_node RSS growth after warm-up", round(100 * self.rss_growth, 2), "%",
                      "< 5 %", self.rss_growth < 0.05)
        ledger.figure(f"{p}commands at 10 Hz in bursts: intents / sent", f"{self.intents_received} / {self.commands_sent}",
                      "", "none lost", self.intents_received == self.commands_sent)


COMMANDS = ("where is the heart", "stop", "zoom in", "move left 5 mm", "show me the left lung",
            "what is this", "collimate tighter", "rotate right 10 degrees", "undo", "take a shot")


def run_load(log_dir: Path, duration_s: float = 60.0, size: int = 512, rate_hz: float = 30.0,
             warmup_s: float | None = None, burst: int = 5, burst_period_s: float = 2.0,
             publisher: str = "carm_sim", log: Callable[[str], None] = print) -> LoadResult:
    """carm_sim (or this process, `publisher="test"`) publishes `size`^2 frames at `rate_hz` for
    `duration_s` while segmentation_node embeds on arrival and command_node parses bursts of
    commands at 10 Hz. RSS growth is measured from the end of the warm-up."""
    warmup_s = warmup_s if warmup_s is not None else min(20.0, max(5.0, duration_s / 3))
    carm_overrides = [("carm_sim", f"image_rate_hz:={rate_hz if publisher == 'carm_sim' else 0.0}"),
                      ("carm_sim", "state_rate_hz:=10.0")]
    with launched_system("carm_sim.launch.yaml", log_dir, carm_overrides, image_size_px=size, time_scale="10.0") as carm, \
            launched_system("segmentation.launch.yaml", log_dir, [("segmentation_node", "embed_on_arrival:=true")],
                            device="cpu") as segmentation, \
            launched_system("command.launch.yaml", log_dir, speech_enabled="false") as command:
        probe = Probe.create("reliability_load")
        try:
            if not probe.wait_until_ready(120.0) or not probe.segment_client.wait_for_service(timeout_sec=180.0):
                raise RuntimeError("the load system did not come up:\n" + read_logs(log_dir))
            if probe.text("stop", timeout_s=120.0) is None:
                raise RuntimeError("command_node did not answer:\n" + read_logs(log_dir))
            frame = cached = None
            if publisher == "test":
                probe.acquire()
                cached = probe.wait_for_frame(timeout_s=60.0)
                frame = test_frame(size, probe.now_stamp()) if cached is None else None
            probe.stop_image_subscription()
            own_frames = 0
            pid = segmentation.processes["segmentation_node"].pid
            period = 1.0 / rate_hz
            started = time.monotonic()
            next_frame, next_burst = started, started + 1.0
            sent, intents_before = 0, len(probe.intents)
            rss: list[tuple[float, int]] = []
            published_before = len(probe.image_states)
            counters_at_warmup = counters_at_end = None
            last_rss = 0.0
            while time.monotonic() - started < duration_s:
                now = time.monotonic()
                if publisher == "test" and now >= next_frame:
                    _publish_cached(probe, cached, frame, size)
                    own_frames += 1
                    next_frame += period
                if now >= next_burst:
                    for i in range(burst):
                        probe.text_pub.publish(String(data=COMMANDS[(sent + i) % len(COMMANDS)]))
                        probe.spin_for(0.1)  # 10 Hz within the burst
                    sent += burst
                    next_burst += burst_period_s
                if now - last_rss >= 1.0:
                    rss.append((now - started, rss_bytes(pid)))
                    last_rss = now
                    if counters_at_warmup is None and now - started >= warmup_s:
                        counters_at_warmup = probe.segmentation_counters()
                probe.executor_.spin_once(timeout_sec=0.002 if publisher == "test" else 0.02)
            elapsed = time.monotonic() - started
            published = own_frames if publisher == "test" else len(probe.image_states) - published_before
            probe._spin_until(lambda: len(probe.intents) - intents_before >= sent, 20.0)
            counters_at_end = probe.segmentation_counters()
            if counters_at_warmup is None or counters_at_end is None or counters_at_end[0] <= counters_at_warmup[0]:
                raise RuntimeError("segmentation_node published no diagnostics during the run:\n" + read_logs(log_dir))
            # frames published between the two diagnostics reports the counters come from
            window = (counters_at_warmup[0], counters_at_end[0])
            published_measured = sum(1 for t, _ in probe.image_states if window[0] <= t <= window[1]) \
                if publisher == "carm_sim" else int(own_frames * (window[1] - window[0]) / max(elapsed, 1e-9))
            dead = dead_nodes(carm, segmentation, command)
            if dead:
                raise RuntimeError(f"{dead} died under load:\n" + read_logs(log_dir))
        finally:
            probe.close()
            rclpy.try_shutdown()
    (t_start, start_counters, first), (t_end, end_counters, last) = counters_at_warmup, counters_at_end
    latencies, pending = [], []
    for _, statuses in probe.diagnostics[first + 1:last + 1]:
        values = statuses.get("segmentation_node", {})
        latencies += [float(v) for v in values.get("embed_latencies_ms", "").split(",") if v]
        pending.append(int(values.get("pending_frames", "0") or 0))

    def delta(key: str) -> int:
        return int(end_counters.get(key, 0) or 0) - int(start_counters.get(key, 0) or 0)

    warm = [(t, b) for t, b in rss if t >= warmup_s] or rss
    measured_s = t_end - t_start
    result = LoadResult(
        duration_s=measured_s, frames_published=published, published_hz=published / elapsed,
        frames_published_measured=published_measured,
        frames_received=delta("frames_received"), frames_refused=delta("frames_refused"),
        frames_embedded=delta("embeddings_computed"), frames_skipped=delta("frames_skipped"),
        max_pending=max(pending, default=0), latencies_ms=latencies,
        # medians of the first and the last 3 samples after the warm-up: the allocator's jitter is not growth
        rss_start_mb=float(np.median([b for _, b in warm[:3]])) / 2**20 if warm else math.nan,
        rss_end_mb=float(np.median([b for _, b in warm[-3:]])) / 2**20 if warm else math.nan,
        rss_max_mb=max(b for _, b in rss) / 2**20 if rss else math.nan, commands_sent=sent,
        intents_received=len(probe.intents) - intents_before,
        publisher="carm_sim" if publisher == "carm_sim" else "cached frames from the bench")
    log(f"  load: {result.published_hz:.1f} Hz published, {result.processed_hz:.2f} Hz embedded, "
        f"latency p50 {result.percentile(50):.0f} ms p99 {result.percentile(99):.0f} ms, "
        f"RSS {result.rss_start_mb:.0f} -> {result.rss_end_mb:.0f} MB, intents {result.intents_received}/{sent}")
    return result


def _publish_cached(probe: Probe, cached, frame: Image | None, size: int) -> None:
    """One frame (carm_sim's last, or a synthetic one) restamped now, with its image_state."""
    stamp = probe.now_stamp()
    if cached is not None:
        msg = image_to_msg(cached.pixels, cached.encoding, Header(stamp=stamp, frame_id="carm_camera"))
        if cached.state is not None:
            state = cached.state
            state.header.stamp = stamp
            probe.image_state_pub.publish(state)
    else:
        msg = frame
        msg.header.stamp = stamp
    probe.image_pub.publish(msg)

