"""live_view: the running system in Foxglove, over the Foxglove WebSocket protocol (foxglove-sdk).

Subscribes to the C-arm's frames and state, FluoroSAM's answers, the planner and the command
node, and streams them to Foxglove (app or desktop: "Open connection" -> ws://host:port; import
config/foxglove_layout.json for the panels):

  /carm/image              CompressedImage (PNG, mono8) or RawImage   the latest frame
  /carm/image/collimator   ImageAnnotations   collimator field (+ iris) and the pose, on the frame
  /carm/image/segmentation ImageAnnotations   outline of the latest /segmentation/result mask
  /carm/calibration        CameraCalibration  the frame's pinhole model (image in the 3D panel)
  /carm/scene              SceneUpdate        C-arm (source, detector, beam, central ray), the
                                              planned target (/plan/target_state), patient box
  /tf                      FrameTransforms    world -> carm_camera (and -> carm_target_camera)
  /live_view/log           Log                /command/heard, /command/intent, /plan/events
  /plan/events             JSON               every PlanEvent, field by field (Raw Messages)

3-D positions are world (patient LPS) millimetres times `scene_scale` (default 0.001: metres,
the unit Foxglove's 3D panel assumes). Foxglove does not latch: the latest message of every
channel is sent again when a client subscribes and every `refresh_period_s`.

The translation from ROS messages to geometry, pixels and text is in small pure functions (top
of this file, no server needed); the `*_message`/`*_entity` functions wrap their results in
Foxglove types, and LiveViewNode only routes messages.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import foxglove
import foxglove.channels as fc
import foxglove.messages as fm
import numpy as np
import rclpy
from foxglove.websocket import ServerListener
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from fluorosam_ros.geometry.camera import CameraProjection
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.msg import PlanEvent, Segmentation
from fluorosam_ros.visualization import COLLIMATOR_COLOUR, MASK_COLOURS

from .common import RELIABLE_QOS, SENSOR_QOS, STATE_QOS, declare, run
from .conversions import MessageError, collimation_from_msg, image_from_msg

# Channel names on the Foxglove side (the layout in config/foxglove_layout.json uses them).
IMAGE_CHANNEL = "/carm/image"
COLLIMATOR_CHANNEL = "/carm/image/collimator"
SEGMENTATION_CHANNEL = "/carm/image/segmentation"
CALIBRATION_CHANNEL = "/carm/calibration"
SCENE_CHANNEL = "/carm/scene"
TF_CHANNEL = "/tf"
LOG_CHANNEL = "/live_view/log"
EVENTS_CHANNEL = "/plan/events"
CHANNELS = (IMAGE_CHANNEL, COLLIMATOR_CHANNEL, SEGMENTATION_CHANNEL, CALIBRATION_CHANNEL, SCENE_CHANNEL,
            TF_CHANNEL, LOG_CHANNEL, EVENTS_CHANNEL)

RGBA = tuple[float, float, float, float]
SOURCE_COLOUR: RGBA = (1.0, 0.45, 0.1, 1.0)
DETECTOR_COLOUR: RGBA = (0.55, 0.65, 0.8, 0.8)
BEAM_COLOUR: RGBA = (1.0, 0.85, 0.2, 0.6)
TARGET_COLOUR: RGBA = (0.2, 0.9, 0.4, 0.45)
PATIENT_COLOUR: RGBA = (0.85, 0.85, 0.85, 0.9)


def rgba(rgb: Sequence[int], alpha: float = 1.0) -> RGBA:
    return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, alpha)


# =========================================================================================
# Pure translation: messages and arrays -> plain geometry, pixels and text
# =========================================================================================
def to_mono8(pixels: np.ndarray) -> np.ndarray:
    """Any validated message image (mono8/mono16/32FC1/rgb8) as (H, W) uint8 for display.

    uint16 keeps its scale (display values, as carm_sim publishes); floats are windowed to
    their own range; colour is averaged to grey."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        grey = pixels.astype(np.float64).mean(axis=-1)
        pixels = np.round(grey).astype(pixels.dtype) if np.issubdtype(pixels.dtype, np.integer) else grey
    if pixels.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) / (high - low) * 255.0).astype(np.uint8)


def encode_png(mono8: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mono8, dtype=np.uint8), mode="L").save(buffer, format="PNG",
                                                                                 compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class CollimatorOutline:
    """The collimated field on an image, in Foxglove image coordinates (origin at the top-left
    corner of the top-left pixel: our detector index convention, so no half-pixel shift)."""

    corners: np.ndarray                          # (4, 2) x, y: a closed loop
    iris: tuple[float, float, float] | None      # centre x, centre y, radius (image pixels)


def collimator_outline(collimation: Collimation, sensor_size: tuple[int, int],
                       image_size: tuple[int, int] | None = None) -> CollimatorOutline | None:
    """The field of an enabled collimation, scaled from the state's detector (W, H) to the image's
    (W, H) when they differ (a binned read-out); None when the collimator is open."""
    if not collimation.enabled:
        return None
    sensor_w, sensor_h = sensor_size
    image_w, image_h = image_size or sensor_size
    if sensor_w <= 0 or sensor_h <= 0:
        raise ValueError("the detector has no pixels")
    sx, sy = image_w / sensor_w, image_h / sensor_h
    c0, c1 = collimation.col_min_px * sx, collimation.col_max_px * sx
    r0, r1 = collimation.row_min_px * sy, collimation.row_max_px * sy
    corners = np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1]], dtype=float)
    iris = None
    if collimation.iris_radius_px > 0:
        iris = (collimation.iris_center_col_px * sx, collimation.iris_center_row_px * sy,
                collimation.iris_radius_px * math.sqrt(sx * sy))
    return CollimatorOutline(corners, iris)


def _runs(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end) of every run of True along axis 1 (end exclusive)."""
    padded = np.pad(edges.astype(np.int8), ((0, 0), (1, 1)))
    steps = np.diff(padded, axis=1)
    rows, starts = np.nonzero(steps == 1)
    _, ends = np.nonzero(steps == -1)  # row-major order pairs each start with its end
    return rows, starts, ends


def mask_boundary_segments(mask: np.ndarray, max_segments: int = 4000) -> np.ndarray:
    """The outline of a mask as line segments along pixel edges, (N, 2, 2) of (x, y) in image
    coordinates (origin at the top-left corner of the top-left pixel). Collinear neighbouring
    edges are merged. A ragged mask with more than `max_segments` is outlined at a coarser
    pixel stride, so a message never grows without bound."""
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    stride = 1
    while True:
        sampled = mask[::stride, ::stride]
        padded = np.pad(sampled, 1)
        horizontal = padded[:-1, 1:-1] != padded[1:, 1:-1]   # (H+1, W): edge y=r, x in [c, c+1]
        vertical = padded[1:-1, :-1] != padded[1:-1, 1:]     # (H, W+1): edge x=c, y in [r, r+1]
        y, x0, x1 = _runs(horizontal)
        x, y0, y1 = _runs(vertical.T)
        count = len(y) + len(x)
        if count <= max_segments or min(sampled.shape) <= 2:
            break
        stride *= 2
    segments = np.empty((count, 2, 2), dtype=float)
    segments[:len(y), 0, 0], segments[:len(y), 0, 1] = x0, y
    segments[:len(y), 1, 0], segments[:len(y), 1, 1] = x1, y
    segments[len(y):, 0, 0], segments[len(y):, 0, 1] = x, y0
    segments[len(y):, 1, 0], segments[len(y):, 1, 1] = x, y1
    segments *= stride
    # a strided outline may overshoot the image by less than a stride: keep it on the image
    segments[..., 0] = np.minimum(segments[..., 0], mask.shape[1])
    segments[..., 1] = np.minimum(segments[..., 1], mask.shape[0])
    return segments


@dataclass(frozen=True)
class CArmView:
    """Where the C-arm's parts are, world mm (from a CArmState message's projection)."""

    source: np.ndarray             # (3,) X-ray source = camera centre
    isocenter: np.ndarray          # (3,)
    principal_ray: np.ndarray      # (3,) unit, source -> detector
    detector_center: np.ndarray    # (3,) where the principal ray meets the detector
    detector_corners: np.ndarray   # (4, 3) pixel corners (0,0) (W,0) (W,H) (0,H): a loop
    field_corners: np.ndarray      # (4, 3) the collimated field on the detector (= detector if open)
    world_from_camera: np.ndarray  # (4, 4) rigid: the ROS optical frame of the images
    source_to_detector_mm: float
    alpha_deg: float
    beta_deg: float
    moving: bool

    @property
    def detector_size_mm(self) -> tuple[float, float]:
        c = self.detector_corners
        return float(np.linalg.norm(c[1] - c[0])), float(np.linalg.norm(c[3] - c[0]))


def camera_from_state_msg(msg: Any) -> CameraProjection:
    """The pinhole a CArmState message describes (its index_from_world); ValueError if it has none."""
    width, height = int(msg.sensor_width_px), int(msg.sensor_height_px)
    if width <= 0 or height <= 0:
        raise ValueError("CArmState has an empty sensor")
    matrix = np.asarray(msg.index_from_world, dtype=float)
    if matrix.size != 12 or not np.any(matrix):
        raise ValueError("CArmState has no index_from_world")
    sdd = float(msg.source_to_detector_distance_mm)
    if not (math.isfinite(sdd) and sdd > 0):
        raise ValueError("CArmState has no source-to-detector distance")
    return CameraProjection(matrix.reshape(3, 4), width, height, sdd)


def carm_view(msg: Any) -> CArmView:
    """A CArmState message (fluorosam_ros/msg/CArmState) as 3-D geometry."""
    camera = camera_from_state_msg(msg)
    width, height = camera.sensor_width, camera.sensor_height
    corners = camera.index_to_world_on_detector(np.array([0.0, width, width, 0.0]),
                                                np.array([0.0, 0.0, height, height]))
    collimation = Collimation(bool(msg.collimation.enabled), float(msg.collimation.col_min_px),
                              float(msg.collimation.row_min_px), float(msg.collimation.col_max_px),
                              float(msg.collimation.row_max_px))
    field_corners = corners
    if collimation.enabled:
        c0, c1 = collimation.col_min_px, collimation.col_max_px
        r0, r1 = collimation.row_min_px, collimation.row_max_px
        field_corners = camera.index_to_world_on_detector(np.array([c0, c1, c1, c0]), np.array([r0, r0, r1, r1]))
    source = camera.source_world
    ray = camera.principal_ray_world
    sdd = camera.source_to_detector_distance_mm
    return CArmView(source=source, isocenter=np.asarray(msg.isocenter_mm, dtype=float),
                    principal_ray=ray, detector_center=source + sdd * ray, detector_corners=corners,
                    field_corners=field_corners, world_from_camera=camera.world_from_camera,
                    source_to_detector_mm=sdd, alpha_deg=float(msg.alpha_deg), beta_deg=float(msg.beta_deg),
                    moving=bool(msg.moving))


def same_view(a: Any, b: Any, tolerance: float = 1e-6) -> bool:
    """Whether two CArmState messages project the same way (same pose and detector)."""
    pa, pb = np.asarray(a.index_from_world, dtype=float), np.asarray(b.index_from_world, dtype=float)
    if pa.size != 12 or pb.size != 12 or not np.any(pa) or not np.any(pb):
        return False
    pa, pb = pa / np.linalg.norm(pa), pb / np.linalg.norm(pb)
    return bool(np.allclose(pa, pb, atol=tolerance) or np.allclose(pa, -pb, atol=tolerance))


def box_edges(corners: np.ndarray) -> np.ndarray:
    """The 12 edges of a box given by 8 corners indexed by bits (x, y, z) as in
    Patient.corners_world(), as (24, 3) line-list points."""
    corners = np.asarray(corners, dtype=float)
    if corners.shape != (8, 3):
        raise ValueError(f"a box needs (8, 3) corners, got {corners.shape}")
    pairs = [(i, i | bit) for i in range(8) for bit in (1, 2, 4) if not i & bit]
    return np.array([corners[k] for pair in pairs for k in pair])


def ct_corners_world(ct_path: str | Path) -> np.ndarray:
    """The 8 corners of a CT's outer voxel faces in the world (LPS mm), from its NIfTI header only
    (the same numbers as Patient.corners_world() without loading the volume)."""
    import nibabel as nib

    from fluorosam_ros.geometry.transforms import apply
    from fluorosam_ros.twin.patient import LPS_FROM_RAS

    image = nib.load(str(ct_path))
    shape = np.asarray(image.shape[:3], dtype=float)
    low, high = -0.5, shape - 0.5
    corners = np.array([[x, y, z] for x in (low, high[0]) for y in (low, high[1]) for z in (low, high[2])])
    return apply(LPS_FROM_RAS @ image.affine, corners)


def twin_ct_path(patient_dir: str = "", ct_path: str = "") -> Path:
    """The CT the twin renders (TwinConfig's rules: ct_path, else patient_dir/ct.nii.gz, else the
    default patient)."""
    if ct_path:
        return Path(ct_path)
    if patient_dir:
        return Path(patient_dir) / "ct.nii.gz"
    from fluorosam_ros.twin.patient import default_patient_dir

    return default_patient_dir() / "ct.nii.gz"


@dataclass(frozen=True)
class Primitive:
    """One drawable of a 3-D scene, in scene units (world mm x scale)."""

    kind: str                            # sphere | cube | arrow | line_list | line_strip | text
    color: RGBA
    position: np.ndarray | None = None   # (3,) centre (sphere, cube, text) or tail (arrow)
    rotation: np.ndarray | None = None   # (3, 3) orientation; an arrow points along its +x
    size: tuple[float, ...] = ()         # sphere/cube: (x, y, z); arrow: shaft length, shaft diameter,
    #                                      head length, head diameter
    points: np.ndarray | None = None     # (N, 3) lines
    thickness: float = 0.0               # lines: pixels; text: font size
    text: str = ""


DETECTOR_THICKNESS_MM = 20.0
SOURCE_DIAMETER_MM = 40.0
ARROW_HEAD_MM = 60.0


def carm_primitives(view: CArmView, scale: float, target: bool = False) -> list[Primitive]:
    """The C-arm: source (a sphere), detector (a thin box behind the image plane), the beam from
    the source to the collimated field's corners and the field's outline on the detector, the
    central ray (an arrow from the source to the detector), the isocenter and a label. A planned
    target is drawn in one translucent green, without the arrow and the isocenter."""
    s = scale
    rotation = view.world_from_camera[:3, :3]
    width_mm, height_mm = view.detector_size_mm
    panel_centre = view.detector_corners.mean(axis=0)  # the principal point need not be the centre
    parts = [
        Primitive("sphere", TARGET_COLOUR if target else SOURCE_COLOUR, view.source * s,
                  size=(SOURCE_DIAMETER_MM * s,) * 3),
        Primitive("cube", TARGET_COLOUR if target else DETECTOR_COLOUR,
                  (panel_centre + view.principal_ray * DETECTOR_THICKNESS_MM / 2) * s, rotation,
                  size=(width_mm * s, height_mm * s, DETECTOR_THICKNESS_MM * s)),
        Primitive("line_list", TARGET_COLOUR if target else BEAM_COLOUR,
                  points=np.concatenate([[view.source, corner] for corner in view.field_corners]) * s, thickness=2.0),
        Primitive("line_strip", TARGET_COLOUR if target else rgba(COLLIMATOR_COLOUR),
                  points=np.concatenate([view.field_corners, view.field_corners[:1]]) * s, thickness=3.0),
    ]
    if not target:
        parts.append(Primitive("sphere", (1.0, 1.0, 1.0, 0.9), view.isocenter * s, size=(12.0 * s,) * 3))
        parts.append(Primitive("arrow", (1.0, 0.3, 0.3, 0.9), view.source * s, rotation_x_to(view.principal_ray),
                               size=((view.source_to_detector_mm - ARROW_HEAD_MM) * s, 6.0 * s, ARROW_HEAD_MM * s,
                                     24.0 * s)))
    label = ("target: " if target else "") + f"alpha {view.alpha_deg:.1f} deg, beta {view.beta_deg:.1f} deg" + \
        (" (moving)" if view.moving else "")
    parts.append(Primitive("text", (1.0, 1.0, 1.0, 1.0), (view.detector_center - view.principal_ray * 30) * s,
                           thickness=14.0, text=label))
    return parts


def patient_primitives(corners: np.ndarray, scale: float, label: str = "patient CT") -> list[Primitive]:
    """The CT's bounding box as a wireframe, labelled at its highest corner."""
    corners = np.asarray(corners, dtype=float)
    top = corners[np.argmax(corners[:, 2])]
    return [Primitive("line_list", PATIENT_COLOUR, points=box_edges(corners) * scale, thickness=1.5),
            Primitive("text", PATIENT_COLOUR, top * scale, thickness=12.0, text=label)]


def quaternion_from_matrix(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a proper rotation matrix."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(np.asarray(rotation, dtype=float)[:3, :3]).as_quat()
    return float(x), float(y), float(z), float(w)


def rotation_x_to(direction: np.ndarray) -> np.ndarray:
    """A rotation that takes +x onto `direction` (Foxglove arrows point along their +x)."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    y = np.cross(helper, d)
    y /= np.linalg.norm(y)
    return np.column_stack([d, y, np.cross(d, y)])


def _nan_to_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def heard_log(text: str) -> tuple[str, str]:
    """(level, text) of a /command/heard line."""
    return "info", f"heard: {text}"


def intent_log(msg: Any) -> tuple[str, str]:
    """(level, text) for a fluorosam_ros/msg/Intent."""
    slots = [f"{name}={value!r}" for name, value in (("structure", msg.structure), ("view", msg.view),
                                                      ("direction", msg.direction), ("unit", msg.unit))
             if value]
    if _nan_to_none(msg.amount) is not None:
        slots.append(f"amount={msg.amount:g}")
    text = f"intent {msg.kind}" + (f" ({', '.join(slots)})" if slots else "")
    text += f", confidence {msg.confidence:.2f}"
    if msg.source_text:
        text += f", from {msg.source or 'input'} {msg.source_text!r}"
    if msg.kind == "not_understood":
        details = msg.error or ""
        if len(msg.candidates):
            details += (" " if details else "") + "did you mean: " + ", ".join(list(msg.candidates)[:3])
        return "warning", text + (f": {details}" if details else "")
    return "info", text


def event_log(msg: Any) -> tuple[str, str]:
    """(level, text) for a fluorosam_ros/msg/PlanEvent."""
    what = " ".join(part for part in (msg.kind, repr(msg.structure) if msg.structure else "", msg.view) if part)
    if msg.success:
        figures = []
        if msg.centring_error_px >= 0:
            figures.append(f"centring {msg.centring_error_px:.1f} px")
        if msg.coverage >= 0:
            figures.append(f"coverage {msg.coverage:.0%}")
        if msg.collimated_area_fraction >= 0:
            figures.append(f"field {msg.collimated_area_fraction:.0%} of the detector")
        if msg.acquisitions:
            figures.append(f"{msg.acquisitions} acquisition{'s' if msg.acquisitions != 1 else ''}")
        text = f"{what}: done in {msg.wall_time_s:.1f} s"
        text += f" ({', '.join(figures)})" if figures else ""
        return "info", text + (f": {msg.message}" if msg.message else "")
    level = "error" if msg.failure_reason in ("internal_error", "carm_unavailable", "timeout") else "warning"
    return level, f"{what}: failed ({msg.failure_reason or 'unknown'}) after {msg.wall_time_s:.1f} s: {msg.message}"


def message_to_dict(msg: Any) -> Any:
    """A ROS message as plain JSON-able values (nested messages as dicts, arrays as lists, NaN/inf
    as None, byte blobs as their length)."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: message_to_dict(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (bytes, bytearray)):
        return {"bytes": len(msg)}
    if isinstance(msg, np.ndarray):
        return [message_to_dict(v) for v in msg.tolist()]
    if isinstance(msg, (list, tuple)) or type(msg).__name__ == "array":
        return [message_to_dict(v) for v in msg]
    if isinstance(msg, float):
        return msg if math.isfinite(msg) else None
    if isinstance(msg, np.generic):
        return message_to_dict(msg.item())
    return msg


# =========================================================================================
# Foxglove messages (foxglove-sdk types are opaque: the tests check the pure parts above)
# =========================================================================================
def fox_timestamp(stamp: Any):
    return fm.Timestamp(int(stamp.sec), int(stamp.nanosec))


def _color(c: RGBA):
    return fm.Color(r=c[0], g=c[1], b=c[2], a=c[3])


def _vec(v: Sequence[float]):
    return fm.Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _pose(position: Sequence[float], rotation: np.ndarray | None = None):
    q = quaternion_from_matrix(rotation) if rotation is not None else (0.0, 0.0, 0.0, 1.0)
    return fm.Pose(position=_vec(position), orientation=fm.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))


def _points3(points: np.ndarray):
    return [fm.Point3(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in np.asarray(points).reshape(-1, 3)]


def image_message(mono8: np.ndarray, stamp: Any, frame_id: str, image_format: str = "png"):
    if image_format == "png":
        return fm.CompressedImage(timestamp=fox_timestamp(stamp), frame_id=frame_id, data=encode_png(mono8),
                                  format="png")
    height, width = mono8.shape
    return fm.RawImage(timestamp=fox_timestamp(stamp), frame_id=frame_id, width=width, height=height,
                       encoding="mono8", step=width, data=np.ascontiguousarray(mono8).tobytes())


def collimator_message(outline: CollimatorOutline | None, stamp: Any, caption: str = "",
                       image_width: int = 256):
    colour = _color(rgba(COLLIMATOR_COLOUR))
    points, circles, texts = [], [], []
    if outline is not None:
        points.append(fm.PointsAnnotation(
            timestamp=fox_timestamp(stamp), type=fm.PointsAnnotationType.LineLoop,
            points=[fm.Point2(x=float(x), y=float(y)) for x, y in outline.corners],
            outline_color=colour, thickness=2.0))
        if outline.iris is not None:
            cx, cy, radius = outline.iris
            circles.append(fm.CircleAnnotation(timestamp=fox_timestamp(stamp), position=fm.Point2(x=cx, y=cy),
                                               diameter=2 * radius, thickness=2.0, outline_color=colour))
    if caption:
        texts.append(fm.TextAnnotation(timestamp=fox_timestamp(stamp), position=fm.Point2(x=4.0, y=4.0),
                                       text=caption, font_size=max(10.0, image_width / 28),
                                       text_color=_color((1.0, 1.0, 1.0, 1.0)),
                                       background_color=_color((0.0, 0.0, 0.0, 0.5))))
    return fm.ImageAnnotations(points=points, circles=circles, texts=texts)


def segmentation_message(segments: np.ndarray | None, stamp: Any, label: str = "",
                         label_at: tuple[float, float] = (4.0, 24.0), image_width: int = 256):
    colour = _color(rgba(MASK_COLOURS[0]))
    points, texts = [], []
    if segments is not None and len(segments):
        points.append(fm.PointsAnnotation(
            timestamp=fox_timestamp(stamp), type=fm.PointsAnnotationType.LineList,
            points=[fm.Point2(x=float(x), y=float(y)) for x, y in np.asarray(segments).reshape(-1, 2)],
            outline_color=colour, thickness=1.5))
    if label:
        texts.append(fm.TextAnnotation(timestamp=fox_timestamp(stamp), position=fm.Point2(x=label_at[0], y=label_at[1]),
                                       text=label, font_size=max(10.0, image_width / 28), text_color=colour,
                                       background_color=_color((0.0, 0.0, 0.0, 0.5))))
    return fm.ImageAnnotations(points=points, texts=texts)


def calibration_message(camera: CameraProjection, stamp: Any, frame_id: str, image_size: tuple[int, int]):
    """The frame's pinhole in Foxglove's (OpenCV) convention, scaled to the image's resolution."""
    k, p = camera.camera_info_k_p()
    width, height = image_size
    sx, sy = width / camera.sensor_width, height / camera.sensor_height
    scale = np.diag([sx, sy, 1.0])
    # OpenCV pixel centres sit at integers: rescale about the pixel corner, then shift back.
    shift = np.array([[1.0, 0.0, 0.5 * sx - 0.5], [0.0, 1.0, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    k, p = shift @ scale @ k, shift @ scale @ p
    return fm.CameraCalibration(timestamp=fox_timestamp(stamp), frame_id=frame_id, width=width, height=height,
                                    distortion_model="plumb_bob", D=[0.0] * 5, K=k.reshape(-1).tolist(),
                                    R=np.eye(3).reshape(-1).tolist(), P=p.reshape(-1).tolist())


def scene_entity(primitives: Sequence["Primitive"], stamp: Any, frame_id: str, entity_id: str):
    """Plain primitives as one Foxglove SceneEntity."""
    kinds: dict[str, list] = {"arrows": [], "cubes": [], "spheres": [], "lines": [], "texts": []}
    for p in primitives:
        if p.kind == "sphere":
            kinds["spheres"].append(fm.SpherePrimitive(pose=_pose(p.position, p.rotation), size=_vec(p.size),
                                                       color=_color(p.color)))
        elif p.kind == "cube":
            kinds["cubes"].append(fm.CubePrimitive(pose=_pose(p.position, p.rotation), size=_vec(p.size),
                                                   color=_color(p.color)))
        elif p.kind == "arrow":
            shaft_length, shaft_diameter, head_length, head_diameter = p.size
            kinds["arrows"].append(fm.ArrowPrimitive(pose=_pose(p.position, p.rotation), shaft_length=shaft_length,
                                                     shaft_diameter=shaft_diameter, head_length=head_length,
                                                     head_diameter=head_diameter, color=_color(p.color)))
        elif p.kind in ("line_list", "line_strip"):
            line_type = fm.LinePrimitiveLineType.LineList if p.kind == "line_list" else \
                fm.LinePrimitiveLineType.LineStrip
            kinds["lines"].append(fm.LinePrimitive(type=line_type, points=_points3(p.points), thickness=p.thickness,
                                                   scale_invariant=True, color=_color(p.color)))
        elif p.kind == "text":
            kinds["texts"].append(fm.TextPrimitive(pose=_pose(p.position), billboard=True, font_size=p.thickness,
                                                   scale_invariant=True, color=_color(p.color), text=p.text))
        else:
            raise ValueError(f"unknown primitive {p.kind!r}")
    return fm.SceneEntity(timestamp=fox_timestamp(stamp), frame_id=frame_id, id=entity_id, **kinds)


def carm_entity(view: CArmView, stamp: Any, frame_id: str, scale: float, entity_id: str = "carm",
                target: bool = False):
    return scene_entity(carm_primitives(view, scale, target), stamp, frame_id, entity_id)


def patient_entity(corners: np.ndarray, stamp: Any, frame_id: str, scale: float, label: str = "patient CT"):
    return scene_entity(patient_primitives(corners, scale, label), stamp, frame_id, "patient")


def transform_message(world_from_camera: np.ndarray, stamp: Any, parent: str, child: str, scale: float):
    q = quaternion_from_matrix(world_from_camera[:3, :3])
    return fm.FrameTransform(timestamp=fox_timestamp(stamp), parent_frame_id=parent, child_frame_id=child,
                             translation=_vec(np.asarray(world_from_camera)[:3, 3] * scale),
                             rotation=fm.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))


def log_message(level: str, text: str, name: str, stamp: Any):
    levels = {"debug": fm.LogLevel.Debug, "info": fm.LogLevel.Info, "warning": fm.LogLevel.Warning,
              "error": fm.LogLevel.Error}
    return fm.Log(timestamp=fox_timestamp(stamp), level=levels.get(level, fm.LogLevel.Info), message=text, name=name)


# =========================================================================================
# The node
# =========================================================================================
@dataclass
class Stats:
    images: int = 0
    scenes: int = 0
    segmentations: int = 0
    logs: int = 0
    refused: int = 0
    subscribers: dict[str, int] = field(default_factory=dict)


class _Listener(ServerListener):
    """Server callbacks (on the server's thread): a new subscriber gets the channel's latest message."""

    def __init__(self, node: "LiveViewNode") -> None:
        self.node = node

    def on_subscribe(self, client, channel) -> None:
        self.node.subscribed(channel.topic, +1)

    def on_unsubscribe(self, client, channel) -> None:
        self.node.subscribed(channel.topic, -1)


class LiveViewNode(Node):
    def __init__(self) -> None:
        super().__init__("live_view")
        self.host = declare(self, "host", "127.0.0.1", "address the Foxglove server binds (0.0.0.0: every interface)")
        port = declare(self, "port", 8765, "Foxglove WebSocket port; 0 = any free port")
        server_name = declare(self, "server_name", "fluorosam_ros", "server name shown in Foxglove")
        self.image_format = declare(self, "image_format", "png", "png (CompressedImage) or raw (RawImage mono8)")
        self.scene_scale = declare(self, "scene_scale", 0.001, "3-D units per world mm (0.001: metres)")
        refresh_period_s = declare(self, "refresh_period_s", 1.0, "resend the latest of every channel; 0 = never")
        self.scene_rate_hz = declare(self, "scene_rate_hz", 10.0, "at most this many C-arm scene updates per second")
        self.world_frame_id = declare(self, "world_frame_id", "world", "3-D frame of the scene (patient LPS)")
        self.camera_frame_id = declare(self, "camera_frame_id", "carm_camera", "frame of the images")
        self.max_outline_segments = declare(self, "max_outline_segments", 4000,
                                            "an outline with more edges is drawn coarser")
        show_patient_box = declare(self, "show_patient_box", True, "draw the twin CT's bounds")
        image_topic = declare(self, "image_topic", "/carm/image")
        image_state_topic = declare(self, "image_state_topic", "/carm/image_state")
        patient_dir = declare(self, "patient_dir", "", "twin CT folder, as in config/twin.yaml")
        ct_path = declare(self, "ct_path", "", "twin CT file, as in config/twin.yaml")
        if self.image_format not in ("png", "raw"):
            raise ValueError(f"image_format must be png or raw, got {self.image_format!r}")

        self._lock = threading.Lock()            # everything below; held while streaming
        self._subscriber_lock = threading.Lock()  # stats.subscribers and _resend
        self._latest: dict[str, Any] = {}        # channel -> its last message (resent on refresh)
        self._resend: set[str] = set()
        self._image_states: dict[tuple[int, int], Any] = {}
        self._frame: tuple[Any, tuple[int, int]] | None = None   # latest image: header, (W, H)
        self._frame_state = None                                 # its CArmState, once known
        self._segmented_state = None                             # the view the outline was drawn on
        self._last_scene = 0.0
        self._state_view: CArmView | None = None
        self._target_view: CArmView | None = None
        self.stats = Stats()
        self.patient_corners: np.ndarray | None = None
        self.patient_label = ""
        if show_patient_box:
            try:
                path = twin_ct_path(patient_dir, ct_path)
                self.patient_corners = ct_corners_world(path)
                self.patient_label = f"patient CT {path.parent.name}"
            except Exception as error:  # the view works without the box
                self.get_logger().warning(f"no patient box: {error}")

        self.fox_context = foxglove.Context()
        image_channel = fc.CompressedImageChannel if self.image_format == "png" else fc.RawImageChannel
        self.channels = {
            IMAGE_CHANNEL: image_channel(IMAGE_CHANNEL, context=self.fox_context),
            COLLIMATOR_CHANNEL: fc.ImageAnnotationsChannel(COLLIMATOR_CHANNEL, context=self.fox_context),
            SEGMENTATION_CHANNEL: fc.ImageAnnotationsChannel(SEGMENTATION_CHANNEL, context=self.fox_context),
            CALIBRATION_CHANNEL: fc.CameraCalibrationChannel(CALIBRATION_CHANNEL, context=self.fox_context),
            SCENE_CHANNEL: fc.SceneUpdateChannel(SCENE_CHANNEL, context=self.fox_context),
            TF_CHANNEL: fc.FrameTransformsChannel(TF_CHANNEL, context=self.fox_context),
            LOG_CHANNEL: fc.LogChannel(LOG_CHANNEL, context=self.fox_context),
            EVENTS_CHANNEL: foxglove.Channel(EVENTS_CHANNEL, context=self.fox_context,
                                             schema={"type": "object", "title": "fluorosam_ros/msg/PlanEvent"}),
        }
        self.server = foxglove.start_server(name=server_name, host=self.host, port=int(port), context=self.fox_context,
                                            server_listener=_Listener(self))
        self.port = self.server.port
        self.get_logger().info(f"Foxglove live view on ws://{self.host}:{self.port} ({len(self.channels)} channels); "
                               f"open it in Foxglove with the layout config/foxglove_layout.json")

        frames = MutuallyExclusiveCallbackGroup()
        self.create_subscription(Image, image_topic, self._on_image, SENSOR_QOS, callback_group=frames)
        self.create_subscription(CArmStateMsg, image_state_topic, self._on_image_state, RELIABLE_QOS,
                                 callback_group=frames)
        self.create_subscription(Segmentation, "/segmentation/result", self._on_segmentation, RELIABLE_QOS,
                                 callback_group=frames)
        states = MutuallyExclusiveCallbackGroup()
        self.create_subscription(CArmStateMsg, "/carm/state", self._on_state, STATE_QOS, callback_group=states)
        self.create_subscription(CArmStateMsg, "/plan/target_state", self._on_target, STATE_QOS,
                                 callback_group=states)
        logs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(String, "/command/heard", self._on_heard, RELIABLE_QOS, callback_group=logs)
        self.create_subscription(IntentMsg, "/command/intent", self._on_intent, RELIABLE_QOS, callback_group=logs)
        self.create_subscription(PlanEvent, "/plan/events", self._on_event, RELIABLE_QOS, callback_group=logs)
        timers = MutuallyExclusiveCallbackGroup()
        self.create_timer(0.2, self._resend_to_new_subscribers, callback_group=timers)
        if refresh_period_s > 0:
            self.create_timer(refresh_period_s, self._refresh, callback_group=timers)
        self.create_timer(30.0, self._report, callback_group=timers)
        with self._lock:
            self._publish_scene(self.get_clock().now().to_msg(), force=True)

    # ---- streaming -------------------------------------------------------------------------
    def _emit(self, channel: str, message: Any, keep: bool = True) -> None:
        try:
            self.channels[channel].log(message)
        except Exception as error:  # a viewer problem must never take the node down
            self.get_logger().error(f"could not stream {channel}: {error}", throttle_duration_sec=5.0)
            return
        if keep:
            self._latest[channel] = message

    def subscribed(self, topic: str, change: int) -> None:
        """Called on the server's thread: note it and answer from the timer. Only the small
        subscriber lock is taken here, never one held while calling into the server."""
        with self._subscriber_lock:
            self.stats.subscribers[topic] = max(self.stats.subscribers.get(topic, 0) + change, 0)
            if change > 0:
                self._resend.add(topic)

    def _resend_to_new_subscribers(self) -> None:
        with self._subscriber_lock:
            topics, self._resend = self._resend, set()
        with self._lock:
            for topic in topics:
                if topic in self._latest:
                    self._emit(topic, self._latest[topic], keep=False)

    def _refresh(self) -> None:
        with self._lock:
            for topic, message in list(self._latest.items()):
                self._emit(topic, message, keep=False)

    def _report(self) -> None:
        with self._subscriber_lock:
            watched = sum(1 for count in self.stats.subscribers.values() if count)
        self.get_logger().info(f"streamed {self.stats.images} images, {self.stats.scenes} scene updates, "
                               f"{self.stats.segmentations} segmentations, {self.stats.logs} log lines; "
                               f"{watched} channels watched")

    # ---- frames ------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        try:
            mono8 = to_mono8(image_from_msg(msg))
        except (MessageError, ValueError) as error:
            self.stats.refused += 1
            self.get_logger().error(f"refused a frame: {error}", throttle_duration_sec=5.0)
            return
        height, width = mono8.shape
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self._emit(IMAGE_CHANNEL, image_message(mono8, msg.header.stamp, self.camera_frame_id, self.image_format))
            self.stats.images += 1
            self._frame = (msg.header, (width, height))
            state = self._image_states.get(key)
            if state is not None:
                self._publish_frame_state(state)
        if self.stats.images == 1:
            self.get_logger().info(f"streaming frames: the first, {width}x{height} {msg.encoding}, was sent")

    def _on_image_state(self, msg: CArmStateMsg) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self._image_states[key] = msg
            while len(self._image_states) > 20:
                self._image_states.pop(next(iter(self._image_states)))
            if self._frame is not None and (self._frame[0].stamp.sec, self._frame[0].stamp.nanosec) == key:
                self._publish_frame_state(msg)

    def _publish_frame_state(self, state: CArmStateMsg) -> None:
        """The latest frame's collimator, caption and calibration (called holding the lock)."""
        header, size = self._frame
        try:
            outline = collimator_outline(collimation_from_msg(state.collimation),
                                         (int(state.sensor_width_px), int(state.sensor_height_px)), size)
            camera = camera_from_state_msg(state)
        except ValueError as error:
            self.get_logger().warning(f"the frame's state is unusable: {error}", throttle_duration_sec=5.0)
            return
        self._frame_state = state
        caption = f"alpha {state.alpha_deg:.1f} deg   beta {state.beta_deg:.1f} deg"
        self._emit(COLLIMATOR_CHANNEL, collimator_message(outline, header.stamp, caption, size[0]))
        self._emit(CALIBRATION_CHANNEL, calibration_message(camera, header.stamp, self.camera_frame_id, size))
        if self._segmented_state is not None and not same_view(self._segmented_state, state):
            # an outline from another view would point at the wrong anatomy
            self._segmented_state = None
            self._emit(SEGMENTATION_CHANNEL, segmentation_message(None, header.stamp))

    def _on_segmentation(self, msg: Segmentation) -> None:
        try:
            mask = image_from_msg(msg.mask) > 0 if msg.mask.width and msg.mask.height else None
        except MessageError as error:
            self.get_logger().error(f"refused a segmentation mask: {error}", throttle_duration_sec=5.0)
            return
        segmented = msg.carm_state if any(msg.carm_state.index_from_world) else None
        with self._lock:
            current = self._frame_state
            stale = segmented is not None and current is not None and not same_view(segmented, current)
            segments = None
            if mask is not None and msg.found and not stale:
                segments = mask_boundary_segments(mask, self.max_outline_segments)
            score = f"IoU {msg.iou_scores[msg.chosen_index]:.2f}" if len(msg.iou_scores) > msg.chosen_index else ""
            label = f"{msg.prompt or 'points'}: " + (f"found ({score})" if msg.found else
                                                     f"not found (absent score {msg.absent_score:.2f})")
            if stale:
                label += " - on an earlier view"
            at = (float(msg.box.x_offset), max(float(msg.box.y_offset) - 16.0, 0.0)) if segments is not None \
                else (4.0, 24.0)
            self._emit(SEGMENTATION_CHANNEL, segmentation_message(segments, msg.header.stamp, label, at,
                                                                  int(msg.mask.width) or 256))
            self._segmented_state = segmented if not stale else None
            self.stats.segmentations += 1

    # ---- 3-D -----------------------------------------------------------------------------------
    def _on_state(self, msg: CArmStateMsg) -> None:
        try:
            view = carm_view(msg)
        except ValueError as error:
            self.get_logger().warning(f"ignoring /carm/state: {error}", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._state_view = view
            self._publish_scene(msg.header.stamp)

    def _on_target(self, msg: CArmStateMsg) -> None:
        try:
            view = carm_view(msg)
        except ValueError as error:
            self.get_logger().warning(f"ignoring /plan/target_state: {error}", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._target_view = view
            self._publish_scene(msg.header.stamp, force=True)

    def _publish_scene(self, stamp, force: bool = False) -> None:
        """Patient box, C-arm and target as one SceneUpdate, with their frames (holding the lock)."""
        now = time.monotonic()
        if not force and now - self._last_scene < 1.0 / max(self.scene_rate_hz, 1e-3):
            return
        self._last_scene = now
        frame, scale = self.world_frame_id, self.scene_scale
        entities, transforms = [], []
        if self.patient_corners is not None:
            entities.append(patient_entity(self.patient_corners, stamp, frame, scale, self.patient_label))
        if self._state_view is not None:
            entities.append(carm_entity(self._state_view, stamp, frame, scale))
            transforms.append(transform_message(self._state_view.world_from_camera, stamp, frame,
                                                self.camera_frame_id, scale))
        if self._target_view is not None:
            entities.append(carm_entity(self._target_view, stamp, frame, scale, "carm_target", target=True))
            transforms.append(transform_message(self._target_view.world_from_camera, stamp, frame,
                                                f"{self.camera_frame_id}_target", scale))
        if entities:
            self._emit(SCENE_CHANNEL, fm.SceneUpdate(entities=entities))
            self.stats.scenes += 1
        if transforms:
            self._emit(TF_CHANNEL, fm.FrameTransforms(transforms=transforms))

    # ---- log -----------------------------------------------------------------------------------
    def _log(self, level: str, text: str, name: str, stamp) -> None:
        self._emit(LOG_CHANNEL, log_message(level, text, name, stamp), keep=False)
        self.stats.logs += 1

    def _stamp(self, header):
        return header.stamp if header.stamp.sec or header.stamp.nanosec else self.get_clock().now().to_msg()

    def _on_heard(self, msg: String) -> None:
        self._log(*heard_log(msg.data), "command_node", self.get_clock().now().to_msg())

    def _on_intent(self, msg: IntentMsg) -> None:
        self._log(*intent_log(msg), "command_node", self._stamp(msg.header))

    def _on_event(self, msg: PlanEvent) -> None:
        self._log(*event_log(msg), "planner_node", self._stamp(msg.header))
        self._emit(EVENTS_CHANNEL, message_to_dict(msg), keep=False)

    def close(self) -> None:
        summary = (f"live view stopped: streamed {self.stats.images} images, {self.stats.scenes} scene updates, "
                   f"{self.stats.segmentations} segmentations, {self.stats.logs} log lines")
        if rclpy.ok():
            self.get_logger().info(summary)
        else:  # after SIGINT the ROS logger can no longer publish
            print(f"[INFO] [live_view]: {summary}", flush=True)
        self.server.stop()


def foxglove_layout(world_frame_id: str = "world") -> dict:
    """The Foxglove layout for this node's channels (config/foxglove_layout.json; import it in
    Foxglove with Layouts -> Import from file): the frame with the collimator and mask outline,
    the 3-D scene, the intent/event log and the raw /plan/events."""
    image, scene, log, events = "Image!carm", "3D!scene", "RosOut!events", "RawMessages!plan"
    return {
        "configById": {
            image: {"imageMode": {"imageTopic": IMAGE_CHANNEL, "synchronize": False,
                                  "annotations": {COLLIMATOR_CHANNEL: {"visible": True},
                                                  SEGMENTATION_CHANNEL: {"visible": True}}},
                    "foxglovePanelTitle": "C-arm frame"},
            scene: {"followTf": world_frame_id, "followMode": "follow-none",
                    "cameraState": {"perspective": True, "distance": 2.5, "phi": 55.0, "thetaOffset": 30.0,
                                    "target": [0.0, 0.0, -0.17], "targetOffset": [0.0, 0.0, 0.0],
                                    "targetOrientation": [0.0, 0.0, 0.0, 1.0], "fovy": 45.0, "near": 0.01,
                                    "far": 100.0},
                    "topics": {SCENE_CHANNEL: {"visible": True}},
                    "transforms": {"editable": False, "showLabel": True},
                    "foxglovePanelTitle": "C-arm and patient (world = patient LPS, metres)"},
            log: {"topicToRender": LOG_CHANNEL, "minLogLevel": 1, "searchTerms": [],
                  "foxglovePanelTitle": "Heard, intents and plan events"},
            events: {"topicPath": EVENTS_CHANNEL, "diffEnabled": False, "foxglovePanelTitle": "/plan/events"},
        },
        "globalVariables": {},
        "userNodes": {},
        "playbackConfig": {"speed": 1.0},
        "layout": {"direction": "column", "splitPercentage": 65.0,
                   "first": {"direction": "row", "splitPercentage": 50.0, "first": image, "second": scene},
                   "second": {"direction": "row", "splitPercentage": 60.0, "first": log, "second": events}},
    }


def layout_json(world_frame_id: str = "world") -> str:
    return json.dumps(foxglove_layout(world_frame_id), indent=2) + "\n"


def main() -> None:
    run(LiveViewNode)


if __name__ == "__main__":
    main()
