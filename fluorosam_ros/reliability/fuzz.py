"""Malformed inputs for every in-process boundary (hypothesis strategies) and the checks that
classify how each boundary coped, into a `Ledger`.

Each boundary has a clear error type; a bad input must raise exactly that (REFUSED), never pass
(ACCEPTED) and never raise anything else (CRASHED). The test files under `test/reliability/`
run these properties with pytest; `run_all()` runs them all for `bench/bench_reliability.py`.

Imports hypothesis (a test dependency) and the ROS message packages (no rclpy).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from .ledger import Ledger

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
UINT32 = st.integers(0, 2**32 - 1)


class Blob(bytes):
    """File contents with a short repr (a failing example prints its size, not its bytes)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes, crc32 {zlib.crc32(self):08x}>"


def _replace_one(draw, values: list[float]) -> tuple[list[float], int]:
    """`values` with one entry made NaN or +-inf."""
    values = list(values)
    index = draw(st.integers(0, len(values) - 1))
    values[index] = draw(NON_FINITE)
    return values, index


# ==== images: conversions.image_from_msg -> MessageError =================================
IMAGE_BOUNDARY = "conversions.image_from_msg"
IMAGE_KINDS = ("wrong encoding", "step/data mismatch", "empty", "NaN/inf float image", "huge size")


@st.composite
def bad_images(draw, kinds: tuple[str, ...] = IMAGE_KINDS):
    from sensor_msgs.msg import Image

    from fluorosam_ros.nodes.conversions import IMAGE_ENCODINGS, MAX_IMAGE_PIXELS

    kind = draw(st.sampled_from(kinds))
    encoding = draw(st.sampled_from(sorted(IMAGE_ENCODINGS)))
    dtype, channels = IMAGE_ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    step = width * channels * itemsize + draw(st.integers(0, 4))
    size = step * height
    big = draw(st.booleans())
    if kind == "wrong encoding":
        encoding = draw(st.one_of(
            st.sampled_from(["", "MONO8", "Mono16", "bgr8", "bgra8", "16UC1", "32FC3", "64FC1", "yuv422",
                             "bayer_rggb8", "8UC1", "mono 8", "rgb16"]),
            st.text(max_size=20)).filter(lambda e: e not in IMAGE_ENCODINGS))
        data = bytes(size)
    elif kind == "step/data mismatch":
        if draw(st.booleans()):
            step = draw(st.integers(0, max(width * channels * itemsize - 1, 0)))  # shorter than a row
            size = draw(st.integers(0, 3 * width * channels * itemsize * height))
        else:
            size = draw(st.integers(0, 2 * size + 8).filter(lambda n: n != step * height))
        data = bytes(size)
    elif kind == "empty":
        if draw(st.booleans()):
            height = 0
        else:
            width = 0
        if draw(st.booleans()):
            height = width = 0
        step = width * channels * itemsize
        data = bytes(step * height)
    elif kind == "NaN/inf float image":
        encoding, dtype, channels, itemsize = "32FC1", np.float32, 1, 4
        step = width * 4
        pixels = np.asarray(draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=height * width,
                                          max_size=height * width)), dtype=np.float32).reshape(height, width)
        for _ in range(draw(st.integers(1, 3))):
            pixels[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = draw(NON_FINITE)
        data = pixels.astype(">f4" if big else "<f4").tobytes()
    else:  # huge size: more pixels than the limit, whatever data comes with it
        width = draw(st.integers(1, 2**32 - 1))
        height = draw(st.integers(MAX_IMAGE_PIXELS // width + 1, 2**32 - 1))
        step = draw(st.sampled_from([width * channels * itemsize, 0, draw(UINT32)]))
        step = min(step, 2**32 - 1)
        data = bytes(draw(st.integers(0, 64)))
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big), step=step)
    msg.data = data
    return kind, msg


def check_image(ledger: Ledger, case) -> str:
    from fluorosam_ros.nodes.conversions import MessageError, image_from_msg

    kind, msg = case
    return ledger.attempt(IMAGE_BOUNDARY, kind, lambda: image_from_msg(msg), MessageError)


# ==== C-arm state messages: carm_config_from_msg / carm_state_from_msg -> MessageError ====
CONFIG_BOUNDARY = "conversions.carm_config_from_msg"
CONFIG_KINDS = ("NaN/inf field", "empty sensor", "projection not ours", "joint limits min > max",
                "impossible distances")
STATE_BOUNDARY = "conversions.carm_state_from_msg"
STATE_KINDS = ("NaN/inf pose", "NaN/inf collimation", "collimation outside the detector",
               "sensor size disagrees with the device")
ISOCENTER_BOUNDS = ((-500.0, -500.0, -500.0), (500.0, 500.0, 500.0))


def reference_device(size: int = 64):
    from fluorosam_ros.geometry.carm import CArmConfig

    return CArmConfig.for_supine_patient(mirror_columns=True, isocenter_min_mm=ISOCENTER_BOUNDS[0],
                                         isocenter_max_mm=ISOCENTER_BOUNDS[1]).with_image_size(size)


def good_state_msg(draw, size: int = 64):
    """A valid CArmState message of the reference device at a random pose within its limits."""
    from std_msgs.msg import Header

    from fluorosam_ros.geometry.carm import CArmPose, CArmState
    from fluorosam_ros.nodes.conversions import carm_state_to_msg

    config = reference_device(size)
    pose = CArmPose(tuple(draw(st.floats(-400, 400)) for _ in range(3)),
                    draw(st.floats(config.min_alpha_deg, config.max_alpha_deg)),
                    draw(st.floats(config.min_beta_deg, config.max_beta_deg)))
    return config, carm_state_to_msg(CArmState(config, pose), Header(frame_id="world"))


@st.composite
def bad_config_messages(draw):
    kind = draw(st.sampled_from(CONFIG_KINDS))
    _, msg = good_state_msg(draw)
    if kind == "NaN/inf field":
        names = ["source_to_detector_distance_mm", "source_to_isocenter_distance_mm", "pixel_size_mm",
                 "min_alpha_deg", "max_alpha_deg", "min_beta_deg", "max_beta_deg", "alpha_deg", "beta_deg",
                 "isocenter_mm", "index_from_world"]
        name = draw(st.sampled_from(names))
        if name in ("isocenter_mm", "index_from_world"):
            values, _ = _replace_one(draw, [float(v) for v in getattr(msg, name)])
            setattr(msg, name, values)
        else:
            setattr(msg, name, draw(NON_FINITE))
    elif kind == "empty sensor":
        if draw(st.booleans()):
            msg.sensor_width_px = 0
        else:
            msg.sensor_height_px = 0
    elif kind == "projection not ours":
        matrix = draw(st.lists(st.floats(-1e4, 1e4), min_size=12, max_size=12))
        msg.index_from_world = [float(v) for v in matrix]
    elif kind == "joint limits min > max":
        if draw(st.booleans()):
            msg.min_alpha_deg, msg.max_alpha_deg = msg.max_alpha_deg + draw(st.floats(0.1, 360)), msg.min_alpha_deg
        else:
            msg.min_beta_deg, msg.max_beta_deg = msg.max_beta_deg + draw(st.floats(0.1, 360)), msg.min_beta_deg
    else:
        choice = draw(st.integers(0, 2))
        if choice == 0:  # source beyond the detector
            msg.source_to_isocenter_distance_mm = msg.source_to_detector_distance_mm + draw(st.floats(0, 1e4))
        elif choice == 1:
            msg.source_to_isocenter_distance_mm = -draw(st.floats(0, 1e4))
        else:
            msg.pixel_size_mm = -draw(st.floats(0, 10))
    return kind, msg


def check_config_message(ledger: Ledger, case) -> str:
    from fluorosam_ros.nodes.conversions import MessageError, carm_config_from_msg

    kind, msg = case
    return ledger.attempt(CONFIG_BOUNDARY, kind, lambda: carm_config_from_msg(msg, *ISOCENTER_BOUNDS), MessageError)


@st.composite
def bad_state_messages(draw):
    kind = draw(st.sampled_from(STATE_KINDS))
    config, msg = good_state_msg(draw)
    width, height = config.sensor_width_px, config.sensor_height_px
    c = msg.collimation
    c.enabled, c.col_min_px, c.row_min_px, c.col_max_px, c.row_max_px = True, 8.0, 8.0, width - 8.0, height - 8.0
    if kind == "NaN/inf pose":
        values, _ = _replace_one(draw, [*msg.isocenter_mm, msg.alpha_deg, msg.beta_deg])
        msg.isocenter_mm, msg.alpha_deg, msg.beta_deg = values[:3], values[3], values[4]
    elif kind == "NaN/inf collimation":
        name = draw(st.sampled_from(["col_min_px", "row_min_px", "col_max_px", "row_max_px", "iris_radius_px",
                                     "iris_center_col_px", "iris_center_row_px"]))
        setattr(c, name, draw(NON_FINITE))
    elif kind == "collimation outside the detector":
        side = draw(st.sampled_from(["col_min_px", "row_min_px", "col_max_px", "row_max_px"]))
        beyond = draw(st.floats(0.5, 1e6))
        setattr(c, side, -beyond if side.endswith("min_px") else (width if side.startswith("col") else height) + beyond)
    else:
        msg.sensor_width_px = width + draw(st.integers(1, 4096))
        msg.sensor_height_px = draw(st.sampled_from([height, msg.sensor_width_px]))
    return kind, config, msg


def check_state_message(ledger: Ledger, case) -> str:
    from fluorosam_ros.nodes.conversions import MessageError, carm_state_from_msg

    kind, config, msg = case
    return ledger.attempt(STATE_BOUNDARY, kind, lambda: carm_state_from_msg(msg, config), MessageError)


# ==== collimation: Collimation.validate -> CollimationError ===============================
COLLIMATION_BOUNDARY = "Collimation.validate (carm_sim's /carm/move)"
COLLIMATION_KINDS = ("outside the detector", "NaN/inf", "empty rectangle", "negative iris")


@st.composite
def bad_collimations(draw):
    from fluorosam_ros.msg import Collimation as CollimationMsg

    kind = draw(st.sampled_from(COLLIMATION_KINDS))
    width, height = draw(st.integers(8, 2048)), draw(st.integers(8, 2048))
    values = {"col_min_px": width * 0.25, "row_min_px": height * 0.25, "col_max_px": width * 0.75,
              "row_max_px": height * 0.75, "iris_radius_px": 0.0, "iris_center_col_px": 0.0,
              "iris_center_row_px": 0.0}
    if kind == "outside the detector":
        for side in draw(st.sets(st.sampled_from(["col_min_px", "row_min_px", "col_max_px", "row_max_px"]),
                                 min_size=1)):
            beyond = draw(st.floats(1e-3, 1e9))
            limit = width if side.startswith("col") else height
            values[side] = -beyond if side.endswith("min_px") else limit + beyond
    elif kind == "NaN/inf":
        values[draw(st.sampled_from(sorted(values)))] = draw(NON_FINITE)
    elif kind == "empty rectangle":
        if draw(st.booleans()):
            values["col_max_px"] = values["col_min_px"] - draw(st.floats(0, width * 0.25))
        else:
            values["row_max_px"] = values["row_min_px"] - draw(st.floats(0, height * 0.25))
    else:
        values["iris_radius_px"] = -draw(st.floats(1e-6, 1e6))
    return kind, width, height, CollimationMsg(enabled=True, **values)


def check_collimation(ledger: Ledger, case) -> str:
    from fluorosam_ros.geometry.collimation import CollimationError
    from fluorosam_ros.nodes.conversions import collimation_from_msg

    kind, width, height, msg = case
    return ledger.attempt(COLLIMATION_BOUNDARY, kind,
                          lambda: collimation_from_msg(msg).validate(width, height), CollimationError)


# ==== poses: CArmGeometry.validate -> PoseError; relative_move never leaves the limits ======
POSE_BOUNDARY = "CArmGeometry.validate (carm_sim's /carm/move)"
POSE_KINDS = ("NaN/inf", "alpha beyond limits", "beta beyond limits", "isocenter beyond travel")
RELATIVE_BOUNDARY = "control.views.relative_move (planner)"
RELATIVE_KINDS = ("rotate", "tilt", "move", "zoom")


@st.composite
def bad_poses(draw):
    from fluorosam_ros.geometry.carm import CArmPose

    config = reference_device()
    kind = draw(st.sampled_from(POSE_KINDS))
    values = [draw(st.floats(-400, 400)) for _ in range(3)] + [
        draw(st.floats(config.min_alpha_deg, config.max_alpha_deg)),
        draw(st.floats(config.min_beta_deg, config.max_beta_deg))]
    beyond = draw(st.one_of(st.floats(1e-6, 1e12), st.just(math.inf)))
    if kind == "NaN/inf":
        values, _ = _replace_one(draw, values)
    elif kind == "alpha beyond limits":
        values[3] = config.max_alpha_deg + beyond if draw(st.booleans()) else config.min_alpha_deg - beyond
    elif kind == "beta beyond limits":
        values[4] = config.max_beta_deg + beyond if draw(st.booleans()) else config.min_beta_deg - beyond
    else:
        axis = draw(st.integers(0, 2))
        values[axis] = ISOCENTER_BOUNDS[1][axis] + beyond if draw(st.booleans()) else ISOCENTER_BOUNDS[0][axis] - beyond
    return kind, CArmPose(tuple(values[:3]), values[3], values[4])


def check_pose(ledger: Ledger, case) -> str:
    from fluorosam_ros.geometry.carm import CArmGeometry, PoseError

    kind, pose = case
    geometry = CArmGeometry(reference_device())
    return ledger.attempt(POSE_BOUNDARY, kind, lambda: geometry.validate(pose), PoseError)


@st.composite
def relative_requests(draw):
    """A valid current pose and any relative request, amounts huge, negative or NaN included."""
    from fluorosam_ros.geometry.carm import CArmPose

    config = reference_device()
    action = draw(st.sampled_from(RELATIVE_KINDS))
    directions = {"rotate": ["left", "right", "lao", "rao"], "tilt": ["cranial", "caudal"],
                  "move": ["left", "right", "up", "down", "cranial", "caudal", "in", "out"], "zoom": ["in", "out"]}
    direction = draw(st.one_of(st.sampled_from(directions[action]), st.text(max_size=8)))
    amount = draw(st.one_of(st.floats(-1e4, 1e4), st.sampled_from([500.0, 360.0, 1e9, -1e9, math.nan, math.inf,
                                                                    -math.inf, 0.0])))
    pose = CArmPose(tuple(draw(st.floats(-400, 400)) for _ in range(3)),
                    draw(st.floats(config.min_alpha_deg, config.max_alpha_deg)),
                    draw(st.floats(config.min_beta_deg, config.max_beta_deg)))
    return action, direction, amount, pose


def check_relative_move(ledger: Ledger, case) -> str:
    """REFUSED here means: refused with PlanningInputError/PoseError, or clamped into the limits.
    ACCEPTED would be a pose outside the limits (the planner would command it)."""
    from fluorosam_ros.control.safety import PlanningInputError
    from fluorosam_ros.control.views import relative_move
    from fluorosam_ros.geometry.carm import CArmGeometry, PoseError

    action, direction, amount, pose = case
    geometry = CArmGeometry(reference_device())
    return ledger.attempt(RELATIVE_BOUNDARY, f"{action} by any amount",
                          lambda: relative_move(pose, geometry, action, direction, amount),
                          (PlanningInputError, PoseError),
                          accept_ok=lambda result: not geometry.limit_violations(result.pose))


# ==== the language parser: never raises; refuses what it must =============================
PARSER_BOUNDARY = "language.CommandParser.parse"
PARSER_KINDS = ("random unicode", "10,000 characters", "non-UTF-8 bytes (decoded with errors)",
                "empty / whitespace", "control characters")


@st.composite
def odd_texts(draw):
    kind = draw(st.sampled_from(PARSER_KINDS))
    if kind == "random unicode":
        text = draw(st.text(max_size=200))
    elif kind == "10,000 characters":
        text = draw(st.text(min_size=1, max_size=50)) * 10_000
        text = (text + "stop " * 2000)[:draw(st.integers(10_000, 12_000))]
    elif kind == "non-UTF-8 bytes (decoded with errors)":
        raw = draw(st.binary(min_size=1, max_size=200))
        raw = b"\xff\xfe" + raw + b"\xc3\x28\xa0\xa1show the heart"
        text = raw.decode("utf-8", errors=draw(st.sampled_from(["replace", "surrogateescape", "ignore",
                                                                 "backslashreplace"])))
    elif kind == "empty / whitespace":
        text = draw(st.text(alphabet=" \t\n\r\u00a0\u2028\u3000\u200b", max_size=40))
    else:
        text = draw(st.text(alphabet=st.characters(codec="ascii", categories=["Cc"]), min_size=1, max_size=50))
        text = draw(st.sampled_from(["", "show the heart", "stop"])) + text
    return kind, text


def check_text(ledger: Ledger, parser, case) -> str:
    """Handled correctly: an Intent of a known kind, confidence in [0, 1], an acting intent only
    with at least the motion threshold, and not_understood for over-long or empty input."""
    from fluorosam_ros.language import intents as K
    from fluorosam_ros.language.intents import Intent

    kind, text = case
    limit = parser.config.max_text_chars

    def handled(intent) -> bool:
        if not isinstance(intent, Intent) or intent.kind not in K.KINDS or not 0.0 <= intent.confidence <= 1.0:
            return False
        if intent.kind in K.ACTION_KINDS and intent.confidence < parser.config.motion_threshold:
            return False
        if (len(text) > limit or not text.strip()) and intent.kind != K.NOT_UNDERSTOOD:
            return False
        return True

    # parse() has no error type: it answers every input with an Intent, so any exception is a crash
    return ledger.attempt(PARSER_BOUNDARY, kind, lambda: parser.parse(text), (), accept_ok=handled)


# ==== the predictor's prompts: FluoroSAMPredictor.predict -> PromptError ====================
PROMPT_BOUNDARY = "FluoroSAMPredictor.predict"
PROMPT_KINDS = ("no prompt", "empty text", "huge text", "points outside the image", "NaN/inf points",
                "labels not 0/1", "points and labels disagree")
PROMPT_IMAGE_SHAPE = (50, 40)  # (H, W) of the image the predictor holds


@st.composite
def bad_prompts(draw):
    kind = draw(st.sampled_from(PROMPT_KINDS))
    height, width = PROMPT_IMAGE_SHAPE
    count = draw(st.integers(1, 6))
    points = np.column_stack([[draw(st.floats(0, width - 1e-3)) for _ in range(count)],
                              [draw(st.floats(0, height - 1e-3)) for _ in range(count)]])
    labels = np.asarray([draw(st.integers(0, 1)) for _ in range(count)])
    text = draw(st.sampled_from([None, "heart", "left lung"]))
    if kind == "no prompt":
        return kind, {}
    if kind == "empty text":
        return kind, {"text": draw(st.text(alphabet=" \t\n\r\u00a0\u3000", max_size=30))}
    if kind == "huge text":
        body = draw(st.text(min_size=1, max_size=20).filter(lambda t: t.strip()))
        return kind, {"text": (body.strip() + "x") * (10_000 // (len(body.strip()) + 1) + 1)}
    if kind == "points outside the image":
        index = draw(st.integers(0, count - 1))
        axis = draw(st.integers(0, 1))
        limit = width if axis == 0 else height
        points[index, axis] = draw(st.one_of(st.floats(-1e9, -1e-6), st.floats(limit, 1e9)))
    elif kind == "NaN/inf points":
        points[draw(st.integers(0, count - 1)), draw(st.integers(0, 1))] = draw(NON_FINITE)
    elif kind == "labels not 0/1":
        labels[draw(st.integers(0, count - 1))] = draw(st.integers(-2**31, 2**31 - 1).filter(lambda v: v not in (0, 1)))
    else:
        choice = draw(st.integers(0, 2))
        if choice == 0:
            labels = labels[:-1] if count > 1 else np.asarray([1, 1])
        elif choice == 1:
            return kind, {"text": text, "points": points}
        else:
            return kind, {"text": text, "points": np.zeros((65, 2)), "labels": np.ones(65)}
    return kind, {"text": text, "points": points, "labels": labels}


def check_prompt(ledger: Ledger, predictor, case) -> str:
    from fluorosam_ros.model.predictor import PromptError

    kind, kwargs = case
    return ledger.attempt(PROMPT_BOUNDARY, kind, lambda: predictor.predict(**kwargs), PromptError)


class HashingSentenceEncoder:
    """A deterministic, instant stand-in for MiniLM (the prompt checks run before any encoding
    matters)."""

    dim = 384

    def encode(self, texts):
        import torch

        rows = [torch.randn(384, generator=torch.Generator().manual_seed(zlib.crc32(t.encode("utf-8", "replace"))))
                for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def tiny_predictor():
    """An untrained registry model (no pretrained backbone, hashing text encoder) holding a
    random (50, 40) image: builds in well under a second."""
    import torch

    from fluorosam_ros.model.build import build_model
    from fluorosam_ros.model.predictor import FluoroSAMPredictor

    torch.manual_seed(0)
    model = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(),
                        pretrained_backbone=False, overrides={"image_size": 64})
    predictor = FluoroSAMPredictor(model)
    predictor.set_image(np.random.default_rng(0).random(PROMPT_IMAGE_SHAPE).astype(np.float32))
    return predictor


# ==== audio chunks: command_node's chunk check ==============================================
AUDIO_BOUNDARY = "command_node.audio_refusal"
AUDIO_KINDS = ("wrong sample rate", "not mono")


@st.composite
def bad_audio_chunks(draw):
    from fluorosam_ros.msg import AudioChunk

    kind = draw(st.sampled_from(AUDIO_KINDS))
    rate, channels = 16000, 1
    if kind == "wrong sample rate":
        rate = draw(st.one_of(st.sampled_from([0, 8000, 11025, 22050, 44100, 48000, 15999, 16001]), UINT32)
                    .filter(lambda r: r != 16000))
    else:
        channels = draw(st.integers(2, 255))
    samples = draw(st.lists(st.integers(-32768, 32767), max_size=64))
    return kind, AudioChunk(sample_rate_hz=rate, channels=channels, samples=samples,
                            end_of_utterance=draw(st.booleans()))


def check_audio_chunk(ledger: Ledger, case, speech_enabled: bool = True) -> str:
    from fluorosam_ros.nodes.command_node import audio_refusal

    kind, msg = case
    return ledger.attempt(AUDIO_BOUNDARY, kind,
                          lambda: audio_refusal(msg.sample_rate_hz, msg.channels, 16000, speech_enabled),
                          (), accept_ok=lambda reason: bool(reason) and str(msg.sample_rate_hz) in reason
                          if kind == "wrong sample rate" else bool(reason))


# ==== checkpoints: build.load_checkpoint -> CheckpointError ================================
CHECKPOINT_BOUNDARY = "model.build.load_checkpoint"
CHECKPOINT_KINDS = ("truncated file", "not a checkpoint (random bytes / empty)", "wrong architecture",
                    "NaN/inf weights", "not a FluoroSAM dict")


@dataclass
class CheckpointBench:
    """A tiny model, its valid checkpoint's bytes and its state dict, to corrupt."""
    model: Any
    payload: bytes
    state: dict


def checkpoint_bench() -> CheckpointBench:
    import torch

    from fluorosam_ros.model.build import save_checkpoint

    predictor = tiny_predictor()
    with tempfile.TemporaryDirectory(prefix="fluorosam_reliability_") as folder:
        save_checkpoint(predictor.model, Path(folder) / "valid_checkpoint.pt", "fluorosam_cpu_small")
        payload = (Path(folder) / "valid_checkpoint.pt").read_bytes()
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    return CheckpointBench(predictor.model, payload, state)


@st.composite
def bad_checkpoints(draw, bench: CheckpointBench):
    """(kind, bytes of the file)."""
    import torch

    kind = draw(st.sampled_from(CHECKPOINT_KINDS))
    if kind == "truncated file":
        return kind, Blob(bench.payload[:draw(st.integers(0, len(bench.payload) - 1))])
    if kind == "not a checkpoint (random bytes / empty)":
        return kind, Blob(draw(st.one_of(st.just(b""), st.binary(max_size=512),
                                         st.just(b"PK\x03\x04" + bytes(100)), st.just(b"\x80\x02}q\x00."))))
    state = {key: value.clone() for key, value in bench.state["model"].items()}
    payload: Any = {"model": state, "config": dict(bench.state["config"])}
    keys = sorted(state)
    if kind == "wrong architecture":
        choice = draw(st.integers(0, 3))
        # (BatchNorm's num_batches_tracked may be absent: torch fills it in, inference is the same)
        key = draw(st.sampled_from([k for k in keys if not k.endswith("num_batches_tracked")]))
        if choice == 0:
            del state[key]
        elif choice == 1:
            state["extra." + key] = state[key]
        elif choice == 2:
            floating = [k for k in keys if state[k].is_floating_point() and state[k].numel() > 1]
            key = draw(st.sampled_from(floating))
            state[key] = torch.zeros(state[key].numel() + draw(st.integers(1, 8)))
        else:
            payload["config"]["name"] = draw(st.sampled_from(["fluorosam_swin_l", "sam_vit_h", "other"]))
    elif kind == "NaN/inf weights":
        floating = [k for k in keys if state[k].is_floating_point()]
        key = draw(st.sampled_from(floating))
        flat = state[key].view(-1)
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(NON_FINITE)
    else:
        payload = draw(st.sampled_from([[1, 2, 3], {"weights": 1}, "model", {"model": "not a dict"}, 7]))
        if payload == {"model": "not a dict"}:
            payload = {"model": {"image_encoder.x": "not a tensor"}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return kind, Blob(buffer.getvalue())


def check_checkpoint(ledger: Ledger, bench: CheckpointBench, case, folder: Path) -> str:
    from fluorosam_ros.model.build import CheckpointError, load_checkpoint

    kind, data = case
    path = Path(folder) / "corrupt.pt"
    path.write_bytes(data)
    return ledger.attempt(CHECKPOINT_BOUNDARY, kind,
                          lambda: load_checkpoint(bench.model, path, expected_name="fluorosam_cpu_small"),
                          CheckpointError)


# ==== dataset shards: shards.read_shard -> ShardError ======================================
SHARD_BOUNDARY = "data.shards.read_shard"
SHARD_KINDS = ("truncated file", "random bytes", "missing member", "corrupt member",
               "inconsistent metadata")


def valid_shard_bytes(rng: np.random.Generator | None = None) -> bytes:
    from fluorosam_ros.data.shards import Sample, ShardWriter

    rng = rng or np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="fluorosam_reliability_") as folder:
        writer = ShardWriter(Path(folder) / "shard-000000.tar")
        for index in range(2):
            image = rng.random((16, 20)).astype(np.float32)
            masks = rng.random((2, 16, 20)) > 0.6
            writer.write(Sample(f"k{index}", {"masks": [{"name": "heart"}, {"name": "liver"}], "split": "train"},
                                image, np.ones((16, 20), bool), masks))
        writer.close()
        return Blob((Path(folder) / "shard-000000.tar").read_bytes())


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@st.composite
def bad_shards(draw, valid: bytes):
    kind = draw(st.sampled_from(SHARD_KINDS))
    if kind == "truncated file":
        # anywhere before the end-of-archive marker is complete (beyond it is only padding)
        with tarfile.open(fileobj=io.BytesIO(valid)) as tar:
            for _ in tar:
                pass
            marker_end = tar.offset + 2 * tarfile.BLOCKSIZE
        return kind, Blob(valid[:draw(st.integers(1, marker_end - 1))])
    if kind == "random bytes":
        return kind, Blob(draw(st.binary(min_size=1, max_size=2048)))
    members = _members(valid)
    names = sorted(members)
    if kind == "missing member":
        del members[draw(st.sampled_from(names))]
    elif kind == "corrupt member":
        name = draw(st.sampled_from(names))
        payload = bytearray(members[name])
        if draw(st.booleans()) or len(payload) < 4:
            payload = bytearray(draw(st.binary(max_size=64)))
        else:
            cut = draw(st.integers(0, len(payload) - 1))
            payload = payload[:cut]
        members[name] = bytes(payload)
    else:
        key = draw(st.sampled_from(sorted({n.split(".")[0] for n in names})))
        meta = json.loads(zlib.decompress(members[f"{key}.json.zlib"]))
        field = draw(st.sampled_from(["height", "width", "masks", "whole"]))
        value = draw(st.sampled_from([None, "16", -1, 0, 3.5, [1], {"a": 1}, 10**9, 17]))
        if field == "whole":
            meta = value if not isinstance(value, dict) else [value]
        elif field == "masks":
            meta["masks"] = draw(st.sampled_from([[], [{"name": "heart"}], None, "heart", 3]))
        else:
            meta[field] = value
        members[f"{key}.json.zlib"] = zlib.compress(json.dumps(meta).encode())
    return kind, Blob(_tar(members))


def check_shard(ledger: Ledger, case, folder: Path) -> str:
    from fluorosam_ros.data.shards import ShardError, read_shard

    kind, data = case
    path = Path(folder) / "shard-999999.tar"
    path.write_bytes(data)
    return ledger.attempt(SHARD_BOUNDARY, kind, lambda: list(read_shard(path)), ShardError)


# ==== all of it, for the bench ==============================================================
def run_all(ledger: Ledger, examples: int = 40, heavy_examples: int = 12,
            parser=None, log: Callable[[str], None] = print) -> None:
    """Every property above, `examples` inputs each (`heavy_examples` for checkpoints), with a
    fixed seed and no shrinking; a property that fails is noted, the rest still run."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from fluorosam_ros.language.parser import CommandParser, ParserConfig

    parser = parser or CommandParser(config=ParserConfig(use_embeddings=False))
    predictor = tiny_predictor()
    folder = Path(tempfile.mkdtemp(prefix="fluorosam_reliability_"))
    bench = checkpoint_bench()
    shard = valid_shard_bytes()
    properties: list[tuple[str, Any, Callable[[Any], str], int]] = [
        (IMAGE_BOUNDARY, bad_images(), lambda c: check_image(ledger, c), examples),
        (CONFIG_BOUNDARY, bad_config_messages(), lambda c: check_config_message(ledger, c), examples),
        (STATE_BOUNDARY, bad_state_messages(), lambda c: check_state_message(ledger, c), examples),
        (COLLIMATION_BOUNDARY, bad_collimations(), lambda c: check_collimation(ledger, c), examples),
        (POSE_BOUNDARY, bad_poses(), lambda c: check_pose(ledger, c), examples),
        (RELATIVE_BOUNDARY, relative_requests(), lambda c: check_relative_move(ledger, c), examples),
        (PARSER_BOUNDARY, odd_texts(), lambda c: check_text(ledger, parser, c), examples),
        (PROMPT_BOUNDARY, bad_prompts(), lambda c: check_prompt(ledger, predictor, c), examples),
        (AUDIO_BOUNDARY, bad_audio_chunks(), lambda c: check_audio_chunk(ledger, c), examples),
        (CHECKPOINT_BOUNDARY, bad_checkpoints(bench), lambda c: check_checkpoint(ledger, bench, c, folder),
         heavy_examples),
        (SHARD_BOUNDARY, bad_shards(shard), lambda c: check_shard(ledger, c, folder), examples),
    ]
    def prop(index: int, strategy, check: Callable[[Any], str], count: int):
        @seed(index)
        @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(case):
            check(case)  # outcomes go to the ledger; nothing to assert here

        return run

    for index, (name, strategy, check, count) in enumerate(properties):
        before = sum(r.tried for (b, _), r in ledger.inputs.items() if b == name)
        try:
            prop(index, strategy, check, count)()
        except Exception as error:  # noqa: BLE001 - a broken property must not hide the others
            ledger.figure(f"fuzz property {name}", f"ERROR {type(error).__name__}: {error}"[:300], "",
                          "runs", False, section="fuzz")
        tried = sum(r.tried for (b, _), r in ledger.inputs.items() if b == name) - before
        log(f"  {name}: {tried} inputs")
    shutil.rmtree(folder, ignore_errors=True)

