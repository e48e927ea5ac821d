"""segmentation_node: FluoroSAM on the C-arm's frames.

Subscribes to `/carm/image` (and `/carm/image_state`, the pose each frame was taken at), serves
`/segment` (the latest frame or a given image, with text and/or points) and publishes every
answer on `/segmentation/result`. The image embedding is cached per frame, so further prompts
on the same frame only run the decoder. It runs on CUDA when there is one, otherwise on the CPU.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from fluorosam_ros.geometry.collimation import CollimationError
from fluorosam_ros.model.build import CheckpointError, build_model, bundled_checkpoint
from fluorosam_ros.model.predictor import FluoroSAMPredictor, Prediction, PromptError
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Segmentation
from fluorosam_ros.srv import Segment

from .common import RELIABLE_QOS, SENSOR_QOS, declare, run
from .conversions import MessageError, collimation_from_msg, image_from_msg, image_to_msg

# Pairs a frame with its /carm/image_state: both carry the same stamp.
STATE_HISTORY = 16
MIN_FRAME_PX = 8  # FluoroSAMPredictor.set_image refuses smaller images


@dataclass
class FrameEntry:
    header: Header
    pixels: np.ndarray          # (H, W) float32 display values, bone bright
    state: CArmStateMsg | None = None
    cacheable: bool = True      # frames from /carm/image; a request's own image is always embedded


def display_from_image(pixels: np.ndarray) -> np.ndarray:
    """A validated message image as float display values (colour averaged to grey)."""
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return pixels.astype(np.float32)


def exposed_mask(state: CArmStateMsg | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The collimated field of the frame, when its state says so and matches the image (a
    malformed or empty field is ignored: the whole image is used)."""
    if state is None or not state.collimation.enabled:
        return None
    if (int(state.sensor_height_px), int(state.sensor_width_px)) != tuple(shape):
        return None
    collimation = collimation_from_msg(state.collimation)
    try:
        collimation.validate(shape[1], shape[0])
    except CollimationError:
        return None
    mask = collimation.field_mask(shape[1], shape[0])
    return mask if mask.any() else None


def plausible_state(msg: CArmStateMsg) -> bool:
    """Finite pose and projection, and a collimation within the message's own detector."""
    values = [*msg.isocenter_mm, msg.alpha_deg, msg.beta_deg, *msg.index_from_world]
    if not all(math.isfinite(float(v)) for v in values):
        return False
    try:
        collimation_from_msg(msg.collimation).validate(int(msg.sensor_width_px), int(msg.sensor_height_px))
    except CollimationError:
        return False
    return True


def box_of(mask: np.ndarray) -> RegionOfInterest:
    if not mask.any():
        return RegionOfInterest()
    rows, cols = np.nonzero(mask)
    return RegionOfInterest(x_offset=int(cols.min()), y_offset=int(rows.min()),
                            width=int(cols.max() - cols.min() + 1), height=int(rows.max() - rows.min() + 1))


class SegmentationNode(Node):
    def __init__(self) -> None:
        super().__init__("segmentation_node")
        model_name = declare(self, "model", "fluorosam_cpu_small", "registry name")
        checkpoint = declare(self, "checkpoint", "", "weights file; empty = the bundled checkpoint")
        device = declare(self, "device", "auto", "auto (CUDA when available), cpu or cuda")
        self.absent_threshold = declare(self, "absent_threshold", 0.5, "absent score at or above which 'not found'")
        image_topic = declare(self, "image_topic", "/carm/image")
        state_topic = declare(self, "image_state_topic", "/carm/image_state")
        self.embed_on_arrival = declare(self, "embed_on_arrival", False,
                                        "embed each new frame at once (faster first answer, more CPU)")
        torch_threads = declare(self, "torch_threads", 0, "CPU threads for inference; 0 = torch's default")
        read_prompts = declare(self, "read_prompts", True, "give the model the canonical name of the structure "
                               "a free-text prompt names (language.prompt_reader); false: the text as written")

        import torch

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        started = time.perf_counter()
        try:
            weights = checkpoint or bundled_checkpoint(model_name)
            model = build_model(model_name, weights).to(self.device)
        except (CheckpointError, ValueError, RuntimeError) as error:
            # Without a model there is nothing this node can do: say why and stop.
            self.get_logger().fatal(f"cannot load model {model_name!r}: {error}")
            raise
        reader = None
        if read_prompts:
            from fluorosam_ros.language.prompt_reader import PromptReader

            # the model's MiniLM, which loads on the first prompt that names no structure
            reader = PromptReader.for_model(model)
        self.predictor = FluoroSAMPredictor(model, absent_threshold=self.absent_threshold, prompt_reader=reader)
        self.get_logger().info(f"{model_name} from {weights} on {self.device} ({time.perf_counter() - started:.1f} s)")

        self._lock = threading.Lock()        # the predictor and its cached embedding
        self._latest: FrameEntry | None = None
        self._embedded_stamp: tuple[int, int] | None = None
        self._states: list[CArmStateMsg] = []
        self.frames_received = 0
        self.frames_refused = 0
        self.frames_skipped = 0        # embed_on_arrival: superseded by a newer frame before embedding
        self.requests = 0
        self.embeddings_computed = 0
        self.last_error = ""
        self._arrival_latencies_ms: deque[float] = deque(maxlen=1000)  # frame stamp -> embedded
        self._unreported_ms: list[float] = []
        self._new_frame = threading.Event()
        self._closing = threading.Event()

        self.result_pub = self.create_publisher(Segmentation, "/segmentation/result", RELIABLE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        frames = MutuallyExclusiveCallbackGroup()
        self.create_subscription(Image, image_topic, self._on_image, SENSOR_QOS, callback_group=frames)
        self.create_subscription(CArmStateMsg, state_topic, self._on_state, RELIABLE_QOS, callback_group=frames)
        self.create_service(Segment, "/segment", self._on_segment, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._diagnostics, callback_group=MutuallyExclusiveCallbackGroup())
        # embed_on_arrival: one worker embeds the NEWEST frame; frames that arrive meanwhile
        # replace the pending one (never a backlog: at most one frame waits)
        self._embedder = None
        if self.embed_on_arrival:
            self._embedder = threading.Thread(target=self._embed_newest, name="embed_on_arrival", daemon=True)
            self._embedder.start()

    # ---- frames --------------------------------------------------------------------------
    def _on_state(self, msg: CArmStateMsg) -> None:
        if not plausible_state(msg):  # never paired with a frame, never passed on in a result
            self.get_logger().error("ignoring a /carm/image_state with NaN/inf values or a collimation "
                                    "outside its detector", throttle_duration_sec=2.0)
            return
        self._states = (self._states + [msg])[-STATE_HISTORY:]
        latest = self._latest
        if latest is not None and latest.state is None and _same_stamp(latest.header, msg.header):
            latest.state = msg

    def _state_for(self, header: Header) -> CArmStateMsg | None:
        return next((s for s in reversed(self._states) if _same_stamp(s.header, header)), None)

    def _on_image(self, msg: Image) -> None:
        try:
            pixels = display_from_image(image_from_msg(msg))
            if min(pixels.shape[:2]) < MIN_FRAME_PX:  # the model cannot take it: keep the previous frame
                raise MessageError(f"a {msg.width}x{msg.height} frame is smaller than {MIN_FRAME_PX}x{MIN_FRAME_PX}")
        except MessageError as error:
            self.frames_refused += 1
            self.get_logger().error(f"refused a frame on /carm/image: {error}", throttle_duration_sec=2.0)
            return
        self.frames_received += 1
        self._latest = FrameEntry(msg.header, pixels, self._state_for(msg.header))
        if self.embed_on_arrival:
            if self._new_frame.is_set():
                self.frames_skipped += 1  # the frame waiting for the embedder is superseded
            self._new_frame.set()

    def _embed_newest(self) -> None:
        while not self._closing.is_set():
            if not self._new_frame.wait(0.2):
                continue
            self._new_frame.clear()
            entry = self._latest
            if entry is None:
                continue
            try:
                with self._lock:
                    self._ensure_embedding(entry)
            except Exception as error:  # one frame the model cannot take must not stop the node
                self.last_error = f"embedding a frame failed: {error}"
                self.get_logger().error(self.last_error, throttle_duration_sec=2.0)
                continue
            stamp = entry.header.stamp.sec + 1e-9 * entry.header.stamp.nanosec
            latency_ms = (self.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3
            self._arrival_latencies_ms.append(latency_ms)
            self._unreported_ms.append(latency_ms)

    def _diagnostics(self) -> None:
        latencies = list(self._arrival_latencies_ms)
        fresh, self._unreported_ms = self._unreported_ms, []
        values = {"frames_received": self.frames_received, "frames_refused": self.frames_refused,
                  "frames_skipped": self.frames_skipped, "embeddings_computed": self.embeddings_computed,
                  "pending_frames": int(self._new_frame.is_set()), "requests": self.requests,
                  "embed_latency_p50_ms": f"{np.percentile(latencies, 50):.1f}" if latencies else "",
                  "embed_latency_p99_ms": f"{np.percentile(latencies, 99):.1f}" if latencies else "",
                  # frame stamp -> embedding done, of the frames embedded since the last report
                  "embed_latencies_ms": ",".join(f"{v:.1f}" for v in fresh)}
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if self.last_error else DiagnosticStatus.OK,
                                  name="segmentation_node", hardware_id=self.device,
                                  message=self.last_error or "ready",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        try:
            self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                  status=[status]))
        except Exception as error:  # a transport hiccup must never take the node down
            self.get_logger().error(f"diagnostics not published: {error}", throttle_duration_sec=10.0)

    def close(self) -> None:
        self._closing.set()

    def _ensure_embedding(self, entry: FrameEntry) -> None:
        stamp = (entry.header.stamp.sec, entry.header.stamp.nanosec) if entry.cacheable else None
        if stamp is not None and self._embedded_stamp == stamp and self.predictor.is_image_set:
            return
        self.predictor.set_image(entry.pixels, exposed_mask(entry.state, entry.pixels.shape))
        self._embedded_stamp = stamp
        self.embeddings_computed += 1

    # ---- /segment ------------------------------------------------------------------------
    def _on_segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        self.requests += 1
        try:
            entry = self._request_frame(request)
            points, labels = _points_from_request(request)
            with self._lock:
                self._ensure_embedding(entry)
                prediction = self.predictor.predict(text=request.text or None, points=points, labels=labels)
        except (MessageError, PromptError, ValueError) as error:
            response.success, response.message = False, str(error)
            self.get_logger().warning(f"/segment refused: {error}")
            return response
        except Exception as error:  # an exception here would end the node: answer with it instead
            self.last_error = f"/segment failed: {error!r}"
            self.get_logger().error(self.last_error)
            response.success, response.message = False, f"internal error: {error!r}"
            return response
        response.result = self._result_msg(entry, request.text, prediction)
        response.success = True
        response.message = ("not found: the model says the structure is not in the image" if prediction.absent
                            else f"found; predicted IoU {prediction.iou_scores[0]:.2f}")
        if request.text and prediction.prompt_text != request.text.strip():
            response.message += f" (prompt read as {prediction.prompt_text!r})"
        self.result_pub.publish(response.result)
        return response

    def _request_frame(self, request: Segment.Request) -> FrameEntry:
        if request.use_latest:
            if self._latest is None:
                raise ValueError("no frame received on /carm/image yet")
            return self._latest
        pixels = display_from_image(image_from_msg(request.image))
        return FrameEntry(request.image.header, pixels, self._state_for(request.image.header), cacheable=False)

    def _result_msg(self, entry: FrameEntry, text: str, prediction: Prediction) -> Segmentation:
        mask = prediction.best_mask if not prediction.absent else np.zeros(entry.pixels.shape, dtype=bool)
        result = Segmentation(header=entry.header, prompt=text, found=not prediction.absent,
                              mask=image_to_msg(mask.astype(np.uint8) * 255, "mono8", entry.header),
                              iou_scores=[float(v) for v in prediction.iou_scores], chosen_index=0,
                              absent_score=float(prediction.absent_score), box=box_of(mask))
        if entry.state is not None:
            result.carm_state = entry.state
        return result


def _same_stamp(a: Header, b: Header) -> bool:
    return a.stamp.sec == b.stamp.sec and a.stamp.nanosec == b.stamp.nanosec


def _points_from_request(request: Segment.Request) -> tuple[np.ndarray | None, np.ndarray | None]:
    coords, labels = list(request.points_xy), list(request.point_labels)
    if not coords and not labels:
        return None, None
    if len(coords) != 2 * len(labels):
        raise ValueError(f"points_xy holds {len(coords)} values for {len(labels)} labels; expected 2 per label")
    return np.asarray(coords, dtype=np.float64).reshape(-1, 2), np.asarray(labels)


def main() -> None:
    run(SegmentationNode)


if __name__ == "__main__":
    main()
