"""Image pre- and post-processing for FluoroSAM.

An X-ray has one channel with an arbitrary intensity range, while the image encoder expects three
ImageNet-normalised channels. Following the FluoroSAM paper, the three channels are three
intensity windows of the same image: a global min-max window, and one window around each of the
two clusters of a 1-D k-means over the intensities (roughly "soft tissue / background" and "bone /
tools"), so contrast inside each cluster survives the conversion to a fixed range.

Geometry follows segment-anything: resize so the longest side is `image_size`, pad bottom/right to
a square, and invert that for the low-resolution mask logits. Coordinates are (x = column,
y = row) in pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

KMEANS_ITERATIONS = 10
# Cluster statistics settle long before this many samples; a fixed stride keeps it deterministic
# and makes a 1024^2 image cost a few milliseconds instead of a few hundred.
KMEANS_MAX_SAMPLES = 1 << 16
# A cluster with zero spread (e.g. a perfectly flat background) still gets a window this wide,
# relative to the image's full range, so its pixels map to 0.5 instead of dividing by zero.
MIN_WINDOW_FRACTION = 1e-3


def _window(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to [0, 1] and clip; a degenerate window maps to zeros."""
    if not high > low:
        return np.zeros(image.shape, dtype=np.float32)
    out = (image.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def kmeans_1d(values: np.ndarray,
              iterations: int = KMEANS_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """Two-cluster 1-D k-means (Lloyd) with a deterministic percentile start.

    Returns (centres (2,), labels) with centres ascending (darker cluster first) and labels 0/1.
    An empty cluster keeps its previous centre, so the result is always finite.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    centres = np.percentile(values, [25.0, 75.0])
    labels = np.zeros(values.shape, dtype=np.int64)
    for _ in range(iterations):
        # In 1-D the nearest-centre assignment is a threshold at the midpoint.
        labels = (values > centres.mean()).astype(np.int64)
        new = centres.copy()
        for k in range(2):
            members = values[labels == k]
            if members.size:
                new[k] = members.mean()
        if np.allclose(new, centres):
            break
        centres = new
    if centres[0] > centres[1]:
        centres = centres[::-1].copy()
        labels = 1 - labels
    return centres, labels


def kmeans_windows(image: np.ndarray, valid: np.ndarray | None = None,
                   sigmas: float = 3.0) -> np.ndarray:
    """Three intensity windows of a single-channel image, as (3, H, W) float32 in [0, 1].

    Channel 0: min-max over the valid pixels. Channels 1, 2: [mu - sigmas*sd, mu + sigmas*sd] of
    the darker and brighter k-means cluster of the valid pixels. Pixels outside `valid` are 0.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"kmeans_windows expects a (H, W) image, got shape {image.shape}")
    if valid is None:
        valid = np.ones(image.shape, dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != image.shape:
        raise ValueError(f"valid mask shape {valid.shape} != image shape {image.shape}")
    valid = valid & np.isfinite(image)
    out = np.zeros((3,) + image.shape, dtype=np.float32)
    if not valid.any():
        log.debug("kmeans_windows: no valid pixels, returning zeros")
        return out

    image = np.where(valid, image, 0).astype(np.float32)
    values = image[valid]
    low, high = float(values.min()), float(values.max())
    out[0] = _window(image, low, high)
    sample = values[:: max(1, values.size // KMEANS_MAX_SAMPLES)]
    centres, labels = kmeans_1d(sample)
    min_half_width = MIN_WINDOW_FRACTION * (high - low)
    for k in range(2):
        members = sample[labels == k]
        spread = float(members.std()) if members.size else 0.0
        half_width = max(sigmas * spread, min_half_width)
        out[1 + k] = _window(image, centres[k] - half_width, centres[k] + half_width)
    out[:, ~valid] = 0.0
    return out


class ResizeLongestSide:
    """Resize images so the longest side is `target_length`, and map coordinates alike."""

    def __init__(self, target_length: int) -> None:
        if target_length <= 0:
            raise ValueError(f"target_length must be positive, got {target_length}")
        self.target_length = int(target_length)

    @staticmethod
    def get_preprocess_shape(h: int, w: int, long: int) -> tuple[int, int]:
        """(h', w') with max(h', w') == long and the aspect ratio kept (rounded)."""
        scale = long / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def apply_image(self, chw: np.ndarray) -> np.ndarray:
        """Resize a (C, H, W) (or (H, W)) array bilinearly; antialiased when shrinking."""
        array = np.asarray(chw)
        squeeze = array.ndim == 2
        if squeeze:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"apply_image expects (C, H, W) or (H, W), got shape {array.shape}")
        new_h, new_w = self.get_preprocess_shape(array.shape[1], array.shape[2], self.target_length)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        shrinking = new_h < array.shape[1] or new_w < array.shape[2]
        resized = F.interpolate(tensor, size=(new_h, new_w), mode="bilinear",
                                align_corners=False, antialias=shrinking)
        out = resized[0].numpy()
        return out[0] if squeeze else out

    def _scale(self, original_size: Sequence[int]) -> tuple[float, float]:
        old_h, old_w = int(original_size[0]), int(original_size[1])
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        return new_w / old_w, new_h / old_h

    def apply_coords(self, coords: np.ndarray | torch.Tensor,
                     original_size: Sequence[int]) -> np.ndarray | torch.Tensor:
        """Scale (..., 2) (x, y) coordinates from `original_size` (H, W) to the resized image."""
        sx, sy = self._scale(original_size)
        if isinstance(coords, torch.Tensor):
            out = coords.detach().clone().to(torch.float32)
        else:
            out = np.array(coords, dtype=np.float32, copy=True)
        out[..., 0] = out[..., 0] * sx
        out[..., 1] = out[..., 1] * sy
        return out

    def apply_boxes(self, boxes: np.ndarray | torch.Tensor,
                    original_size: Sequence[int]) -> np.ndarray | torch.Tensor:
        """Scale (..., 4) (x0, y0, x1, y1) boxes from `original_size` (H, W)."""
        shape = boxes.shape
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(shape)


def pad_to_square(chw: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a (C, h, w) array at the bottom/right to (C, size, size)."""
    chw = np.asarray(chw)
    _, h, w = chw.shape
    if h > size or w > size:
        raise ValueError(f"cannot pad a {h}x{w} image to a {size}x{size} square")
    return np.pad(chw, ((0, 0), (0, size - h), (0, size - w)), mode="constant", constant_values=0)


@dataclass
class Preprocessor:
    """Raw X-ray -> normalised (1, 3, S, S) model input; mask logits -> the raw geometry."""

    image_size: int = 256
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        self.resize = ResizeLongestSide(self.image_size)

    def __call__(self, image: np.ndarray,
                 valid: np.ndarray | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return (normalised input (1, 3, S, S) float32, input_size (h', w') before padding)."""
        windows = kmeans_windows(np.asarray(image), valid)
        resized = self.resize.apply_image(windows)
        input_size = (int(resized.shape[1]), int(resized.shape[2]))
        mean = np.asarray(self.pixel_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.pixel_std, dtype=np.float32)[:, None, None]
        # Normalise before padding (as SAM does) so the padding is exactly 0 at the encoder input.
        normalised = (resized - mean) / std
        padded = pad_to_square(normalised, self.image_size)
        return torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[None], input_size

    def apply_coords(self, coords: np.ndarray | torch.Tensor,
                     original_size: Sequence[int]) -> np.ndarray | torch.Tensor:
        """(x, y) coordinates in the raw image -> coordinates in the model input."""
        return self.resize.apply_coords(coords, original_size)

    def postprocess_masks(self, low_res_logits: torch.Tensor, input_size: Sequence[int],
                          original_size: Sequence[int]) -> torch.Tensor:
        """(B, K, h4, w4) logits -> (B, K, H, W): upsample to S x S, crop the padding, resize."""
        if low_res_logits.ndim != 4:
            raise ValueError("expected (B, K, h, w) logits, "
                             f"got shape {tuple(low_res_logits.shape)}")
        masks = F.interpolate(low_res_logits, size=(self.image_size, self.image_size),
                              mode="bilinear", align_corners=False)
        masks = masks[..., : int(input_size[0]), : int(input_size[1])]
        return F.interpolate(masks, size=(int(original_size[0]), int(original_size[1])),
                             mode="bilinear", align_corners=False)
