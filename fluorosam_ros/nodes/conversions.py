"""Messages <-> core dataclasses. The only place that knows both sides."""

from __future__ import annotations

import math

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fluorosam_ros.geometry.camera import CameraProjection
from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
from fluorosam_ros.geometry.collimation import Collimation, CollimationError
from fluorosam_ros.msg import CArmState as CArmStateMsg
from fluorosam_ros.msg import Collimation as CollimationMsg

# encoding -> (numpy dtype, channels)
IMAGE_ENCODINGS = {
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "32FC1": (np.float32, 1),
    "rgb8": (np.uint8, 3),
}
MAX_IMAGE_PIXELS = 4096 * 4096


class MessageError(ValueError):
    """A message that cannot be turned into data: says what is wrong with it."""


def collimation_to_msg(collimation: Collimation) -> CollimationMsg:
    return CollimationMsg(
        enabled=collimation.enabled, col_min_px=collimation.col_min_px,
        row_min_px=collimation.row_min_px, col_max_px=collimation.col_max_px,
        row_max_px=collimation.row_max_px, iris_radius_px=collimation.iris_radius_px,
        iris_center_col_px=collimation.iris_center_col_px,
        iris_center_row_px=collimation.iris_center_row_px)


def collimation_from_msg(msg: CollimationMsg) -> Collimation:
    return Collimation(bool(msg.enabled), float(msg.col_min_px), float(msg.row_min_px),
                       float(msg.col_max_px), float(msg.row_max_px), float(msg.iris_radius_px),
                       float(msg.iris_center_col_px), float(msg.iris_center_row_px))


def carm_state_to_msg(state: CArmState, header: Header, moving: bool = False) -> CArmStateMsg:
    config, pose = state.config, state.pose
    camera = state.camera()
    return CArmStateMsg(
        header=header,
        isocenter_mm=np.asarray(pose.isocenter_mm, dtype=float),
        alpha_deg=float(pose.alpha_deg), beta_deg=float(pose.beta_deg),
        source_to_detector_distance_mm=config.source_to_detector_distance_mm,
        source_to_isocenter_distance_mm=config.source_to_isocenter_distance_mm,
        sensor_height_px=config.sensor_height_px, sensor_width_px=config.sensor_width_px,
        pixel_size_mm=config.pixel_size_mm,
        min_alpha_deg=config.min_alpha_deg, max_alpha_deg=config.max_alpha_deg,
        min_beta_deg=config.min_beta_deg, max_beta_deg=config.max_beta_deg,
        collimation=collimation_to_msg(state.collimation), moving=moving,
        source_mm=camera.source_world.astype(float),
        index_from_world=camera.index_from_world.reshape(-1).astype(float))


def pose_from_values(isocenter_mm, alpha_deg: float, beta_deg: float) -> CArmPose:
    values = [float(v) for v in isocenter_mm]
    if len(values) != 3:
        raise MessageError(f"isocenter needs 3 values, got {len(values)}")
    return CArmPose(tuple(values), float(alpha_deg), float(beta_deg))


def image_to_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    dtype, channels = IMAGE_ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding,
                is_bigendian=0, step=width * channels * np.dtype(dtype).itemsize)
    msg.data = array.tobytes()
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    """Validated copy of an Image's pixels as (H, W[, C]); raises MessageError on anything odd."""
    if msg.encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"unsupported image encoding {msg.encoding!r}; expected one of "
                           f"{sorted(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[msg.encoding]
    height, width = int(msg.height), int(msg.width)
    if height == 0 or width == 0:
        raise MessageError("image is empty (0 rows or columns)")
    if height * width > MAX_IMAGE_PIXELS:
        raise MessageError(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS}")
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if msg.step < row_bytes:
        raise MessageError(f"step {msg.step} is smaller than a row ({row_bytes} bytes)")
    if len(msg.data) != msg.step * height:
        raise MessageError(f"data has {len(msg.data)} bytes, but step x height = {msg.step * height}")
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(height, msg.step)[:, :row_bytes]
    byte_order = ">" if msg.is_bigendian else "<"
    pixels = raw.copy().view(np.dtype(dtype).newbyteorder(byte_order)).astype(dtype)
    pixels = pixels.reshape((height, width, channels) if channels > 1 else (height, width))
    if np.issubdtype(dtype, np.floating) and not np.all(np.isfinite(pixels)):
        raise MessageError("image contains NaN or inf")
    return pixels


def camera_info_msg(camera: CameraProjection, header: Header) -> CameraInfo:
    k, p = camera.camera_info_k_p()
    return CameraInfo(header=header, height=camera.sensor_height, width=camera.sensor_width,
                      distortion_model="plumb_bob", d=[0.0] * 5, k=k.reshape(-1).tolist(),
                      r=np.eye(3).reshape(-1).tolist(), p=p.reshape(-1).tolist())


def finite(*values: float) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def carm_config_from_msg(msg: CArmStateMsg, isocenter_min_mm, isocenter_max_mm,
                         gamma_deg: float = 0.0, horizontal_offset_mm: float = 0.0) -> CArmConfig:
    """The device geometry a CArmState message describes (supine set-up). Whether the driver
    mirrors columns is not a field: it is read off the message's index_from_world, and a
    message that neither convention reproduces is refused (its projection is not ours)."""
    values = [msg.source_to_detector_distance_mm, msg.source_to_isocenter_distance_mm, msg.pixel_size_mm,
              msg.min_alpha_deg, msg.max_alpha_deg, msg.min_beta_deg, msg.max_beta_deg, msg.alpha_deg,
              msg.beta_deg, *msg.isocenter_mm, *msg.index_from_world]
    if not finite(*values):
        raise MessageError("CArmState contains NaN or inf")
    if msg.sensor_width_px == 0 or msg.sensor_height_px == 0:
        raise MessageError("CArmState has an empty sensor")
    reported = np.asarray(msg.index_from_world, dtype=float).reshape(3, 4)
    pose = CArmPose(tuple(float(v) for v in msg.isocenter_mm), float(msg.alpha_deg), float(msg.beta_deg))
    for mirror in (True, False):
        try:
            config = CArmConfig.for_supine_patient(
                source_to_detector_distance_mm=float(msg.source_to_detector_distance_mm),
                source_to_isocenter_distance_mm=float(msg.source_to_isocenter_distance_mm),
                source_to_isocenter_horizontal_offset_mm=float(horizontal_offset_mm),
                sensor_width_px=int(msg.sensor_width_px), sensor_height_px=int(msg.sensor_height_px),
                pixel_size_mm=float(msg.pixel_size_mm), min_alpha_deg=float(msg.min_alpha_deg),
                max_alpha_deg=float(msg.max_alpha_deg), min_beta_deg=float(msg.min_beta_deg),
                max_beta_deg=float(msg.max_beta_deg), gamma_deg=float(gamma_deg), mirror_columns=mirror,
                isocenter_min_mm=tuple(float(v) for v in isocenter_min_mm),
                isocenter_max_mm=tuple(float(v) for v in isocenter_max_mm))
        except ValueError as error:
            raise MessageError(f"CArmState describes an invalid device: {error}") from error
        ours = CArmState(config, pose).camera().index_from_world
        if np.allclose(ours / np.linalg.norm(ours), reported / max(np.linalg.norm(reported), 1e-12), atol=1e-6):
            return config
    raise MessageError("the CArmState's index_from_world matches neither column convention of our "
                       "geometry (check gamma_deg and the driver's projection)")


def carm_state_from_msg(msg: CArmStateMsg, config: CArmConfig) -> CArmState:
    """A message's pose and collimation on a known device; raises MessageError on NaN/inf, on a
    collimation that is not within the detector and on a message of another sensor size."""
    if not finite(*msg.isocenter_mm, msg.alpha_deg, msg.beta_deg):
        raise MessageError("CArmState pose contains NaN or inf")
    if (int(msg.sensor_width_px), int(msg.sensor_height_px)) != (config.sensor_width_px, config.sensor_height_px):
        raise MessageError(f"CArmState describes a {msg.sensor_width_px}x{msg.sensor_height_px} px sensor, "
                           f"not this device's {config.sensor_width_px}x{config.sensor_height_px}")
    collimation = collimation_from_msg(msg.collimation)
    try:
        collimation.validate(config.sensor_width_px, config.sensor_height_px)
    except CollimationError as error:
        raise MessageError(f"CArmState collimation: {error}") from error
    pose = CArmPose(tuple(float(v) for v in msg.isocenter_mm), float(msg.alpha_deg), float(msg.beta_deg))
    return CArmState(config, pose, collimation)
