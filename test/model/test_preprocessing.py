"""Pre/post-processing: k-means intensity windows, longest-side resize, padding, mask geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorosam_ros.model.preprocessing import (Preprocessor, ResizeLongestSide, kmeans_1d,
                                               kmeans_windows, pad_to_square)


def two_level_image(rng: np.random.Generator, shape=(64, 80)) -> tuple[np.ndarray, np.ndarray]:
    """Dark background (~100) with a bright block (~1000), both with a little noise."""
    bright = np.zeros(shape, dtype=bool)
    bright[16:48, 20:60] = True
    image = np.where(bright, 1000.0, 100.0) + rng.normal(0.0, 5.0, shape)
    return image.astype(np.float32), bright


def test_kmeans_1d_finds_both_levels_darker_first(rng):
    values = np.concatenate([rng.normal(10, 1, 500), rng.normal(50, 2, 100)])
    centres, labels = kmeans_1d(values)
    assert centres[0] == pytest.approx(10, abs=0.5) and centres[1] == pytest.approx(50, abs=1)
    assert labels[:500].sum() == 0 and labels[500:].min() == 1


def test_each_level_gets_its_own_window(rng):
    image, bright = two_level_image(rng)
    windows = kmeans_windows(image)
    assert windows.shape == (3,) + image.shape and windows.dtype == np.float32
    dark_window, bright_window = windows[1], windows[2]
    # Inside its own window a level is mid-range with its noise resolved (not saturated) ...
    assert 0.3 < dark_window[~bright].mean() < 0.7 and dark_window[~bright].std() > 0.05
    assert 0.3 < bright_window[bright].mean() < 0.7 and bright_window[bright].std() > 0.05
    # ... and the other level is clipped to the window's end.
    assert np.all(dark_window[bright] == 1.0)
    assert np.all(bright_window[~bright] == 0.0)


def test_min_max_channel_spans_unit_range(rng):
    image, _ = two_level_image(rng)
    windows = kmeans_windows(image.astype(np.int32))
    assert windows[0].min() == 0.0 and windows[0].max() == 1.0
    assert windows.min() >= 0.0 and windows.max() <= 1.0


def test_invalid_pixels_are_zero_and_ignored(rng):
    image, bright = two_level_image(rng)
    valid = np.ones(image.shape, dtype=bool)
    valid[:, :8] = False
    image[:, :8] = 1e6  # a collimator edge far outside the anatomy's range
    windows = kmeans_windows(image, valid)
    assert np.all(windows[:, ~valid] == 0.0)
    # The outlier did not stretch the min-max window: the bright block still reaches ~1.
    assert windows[0][bright].mean() > 0.9


def test_constant_image_gives_zeros_not_nan():
    windows = kmeans_windows(np.full((16, 16), 7.0))
    assert np.isfinite(windows).all() and np.all(windows == 0.0)
    empty = kmeans_windows(np.ones((8, 8)), valid=np.zeros((8, 8), dtype=bool))
    assert np.all(empty == 0.0)


def test_flat_clusters_still_finite():
    image = np.zeros((10, 10))
    image[:5] = 3.0
    windows = kmeans_windows(image)
    assert np.isfinite(windows).all()
    assert windows[2][:5].mean() == pytest.approx(0.5, abs=1e-3) and windows[2][5:].max() == 0.0


def test_resize_keeps_aspect_ratio():
    resize = ResizeLongestSide(256)
    assert resize.get_preprocess_shape(120, 200, 256) == (154, 256)
    assert resize.get_preprocess_shape(300, 100, 256) == (256, 85)
    out = resize.apply_image(np.ones((3, 120, 200), dtype=np.float32))
    assert out.shape == (3, 154, 256)
    assert np.allclose(out, 1.0, atol=1e-5)


def test_coords_follow_the_image():
    image = np.zeros((1, 120, 200), dtype=np.float32)
    image[0, 38:43, 98:103] = 1.0  # a bright 5x5 dot centred on (x=100, y=40)
    resize = ResizeLongestSide(256)
    resized = resize.apply_image(image)[0]
    x, y = resize.apply_coords(np.array([[100.0, 40.0]]), (120, 200))[0]
    assert resized[int(round(y)), int(round(x))] > 0.5
    # The dot's intensity centroid is where the mapped point says.
    rows, cols = np.indices(resized.shape)
    weight = resized / resized.sum()
    assert abs((weight * cols).sum() - x) < 1.0 and abs((weight * rows).sum() - y) < 1.0
    as_tensor = resize.apply_coords(torch.tensor([[100.0, 40.0]]), (120, 200))
    assert torch.allclose(as_tensor, torch.tensor([[x, y]]))


def test_apply_boxes_scales_both_corners():
    resize = ResizeLongestSide(100)
    boxes = resize.apply_boxes(np.array([[10.0, 20.0, 50.0, 40.0]]), (50, 200))
    assert np.allclose(boxes, [[5.0, 10.0, 25.0, 20.0]])


def test_pad_to_square():
    padded = pad_to_square(np.ones((3, 5, 8)), 8)
    assert padded.shape == (3, 8, 8)
    assert padded[:, :5].min() == 1.0 and padded[:, 5:].max() == 0.0
    with pytest.raises(ValueError):
        pad_to_square(np.ones((3, 9, 8)), 8)


def test_preprocessor_output(rng):
    image, _ = two_level_image(rng, shape=(100, 160))
    pre = Preprocessor(image_size=64)
    tensor, input_size = pre(image.astype(np.uint16))
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == torch.float32
    assert input_size == (40, 64)
    assert torch.all(tensor[..., 40:, :] == 0.0)  # padding is exactly zero after normalisation
    mean = torch.tensor(pre.pixel_mean)[:, None, None]
    std = torch.tensor(pre.pixel_std)[:, None, None]
    content = tensor[0, :, :40, :] * std + mean
    assert content.min() >= -1e-5 and content.max() <= 1 + 1e-5


def test_postprocess_inverts_geometry():
    original = (90, 150)
    mask = np.zeros(original, dtype=np.float32)
    mask[25:70, 40:120] = 1.0
    pre = Preprocessor(image_size=128)
    resized = pre.resize.apply_image(mask[None])
    input_size = resized.shape[1:]
    padded = torch.from_numpy(pad_to_square(resized, 128))[None]
    # What the decoder would give: low-res (S/4) logits of the padded square.
    low_res = torch.nn.functional.interpolate(padded, size=(32, 32), mode="bilinear",
                                              align_corners=False, antialias=True)
    logits = (low_res - 0.5) * 20.0
    restored = pre.postprocess_masks(logits.repeat(2, 3, 1, 1), input_size, original)
    assert restored.shape == (2, 3) + original
    predicted = restored[0, 0].numpy() > 0
    truth = mask > 0.5
    iou = (predicted & truth).sum() / (predicted | truth).sum()
    assert iou > 0.95
