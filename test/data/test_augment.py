from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from fluorosam_ros.data.augment import (CLAHE, NO_AUGMENTATION, STAGES, CoarseDropout,
                                        GaussianBlur, GaussianContrast, Inversion, Noise,
                                        RandomWindow, SimToRealAugmenter, apply_window, clahe,
                                        smooth_random_field)

SIZE = 96
ALL_ON = SimToRealAugmenter(**{f"p_{stage}": 1.0 for stage in STAGES})
AUGMENTATIONS = {
    "coarse_dropout": CoarseDropout(),
    "inversion": Inversion(),
    "gaussian_blur": GaussianBlur(),
    "gaussian_contrast": GaussianContrast(),
    "random_window": RandomWindow(),
    "clahe": CLAHE(),
    "noise": Noise(),
    "composer_default": SimToRealAugmenter(),
    "composer_all": ALL_ON,
}


def phantom(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A DRR-like display image: smooth anatomy-ish blobs plus a little texture."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 0.3 + 0.25 * np.sin(7 * xx) * np.cos(5 * yy) + 0.3 * ((xx - 0.5) ** 2 + (yy - 0.4) ** 2
                                                                  < 0.04)
    image += 0.02 * np.random.default_rng(seed).standard_normal((size, size))
    return np.clip(image, 0, 1).astype(np.float32)


def round_field(size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.4 ** 2


def shuttered(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, image, 0.0).astype(np.float32)


def local_std(image: np.ndarray, block: int = 8) -> float:
    h, w = (s - s % block for s in image.shape)
    blocks = image[:h, :w].reshape(h // block, block, w // block, block)
    return float(blocks.std(axis=(1, 3)).mean())


# --- shared contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_shape_dtype_range_and_input_untouched(name):
    image = phantom()
    before = image.copy()
    out = AUGMENTATIONS[name](image, np.random.default_rng(3))
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    assert out is not image
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_deterministic_for_a_seed(name):
    image = phantom()
    augment = AUGMENTATIONS[name]
    first = augment(image, np.random.default_rng(11))
    np.testing.assert_array_equal(first, augment(image, np.random.default_rng(11)))
    if name not in ("inversion", "composer_default"):
        assert not np.array_equal(first, augment(image, np.random.default_rng(12)))


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_pixels_outside_valid_are_untouched(name):
    valid = round_field()
    image = shuttered(phantom(), valid)
    out = AUGMENTATIONS[name](image, np.random.default_rng(5), valid)
    assert np.all(out[~valid] == 0.0)
    # Not just zeroed: whatever was there comes back unchanged.
    marked = np.where(valid, image, 0.25).astype(np.float32)
    out = AUGMENTATIONS[name](marked, np.random.default_rng(5), valid)
    assert np.all(out[~valid] == 0.25)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        Inversion()(np.zeros((2, 3, 4), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        Inversion()(np.zeros((4, 4), np.float32), np.random.default_rng(0),
                    np.ones((3, 4), bool))


@pytest.mark.parametrize("make", [
    lambda: GaussianBlur(sigma=(2.0, 1.0)),
    lambda: CoarseDropout(hole_size=(0.1, 1.5)),
    lambda: CoarseDropout(noise_probability=2.0),
    lambda: RandomWindow(width=(0.0, 1.0)),
    lambda: CLAHE(tile_grid=(0, 4)),
    lambda: Noise(read_noise=(-0.1, 0.1)),
    lambda: SimToRealAugmenter(p_noise=1.5),
])
def test_invalid_parameters_are_rejected(make):
    with pytest.raises(ValueError):
        make()


# --- coarse dropout ---------------------------------------------------------------------------


def test_dropout_changes_exactly_the_rectangles():
    image = np.full((SIZE, SIZE), 0.5, np.float32)
    dropout = CoarseDropout(num_holes=(3, 5), fill_value=(0.9, 1.0), noise_probability=0.5)
    holes = dropout.sample_holes(image.shape, np.random.default_rng(21))
    out = dropout(image, np.random.default_rng(21))
    covered = np.zeros(image.shape, bool)
    for top, left, h, w in holes:
        covered[top:top + h, left:left + w] = True
    assert 3 <= len(holes) <= 5 and covered.any()
    assert np.all(out[~covered] == 0.5)
    assert np.all(out[covered] >= 0.9)


def test_dropout_hole_sizes_follow_the_range():
    dropout = CoarseDropout(num_holes=(50, 50), hole_size=(0.1, 0.2))
    holes = dropout.sample_holes((200, 100), np.random.default_rng(0))
    heights = np.array([h for _, _, h, _ in holes])
    widths = np.array([w for _, _, _, w in holes])
    assert heights.min() >= 20 and heights.max() <= 40
    assert widths.min() >= 10 and widths.max() <= 20
    assert all(t + h <= 200 and c + w <= 100 for t, c, h, w in holes)


def test_dropout_with_zero_holes_is_identity():
    image = phantom()
    out = CoarseDropout(num_holes=(0, 0))(image, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)


# --- inversion --------------------------------------------------------------------------------


def test_inversion_twice_is_identity_and_flips_values():
    valid = round_field()
    image = shuttered(phantom(), valid)
    rng = np.random.default_rng(0)
    once = Inversion()(image, rng, valid)
    np.testing.assert_allclose(once[valid], 1.0 - image[valid], atol=1e-7)
    np.testing.assert_allclose(Inversion()(once, rng, valid), image, atol=1e-6)


# --- blur -------------------------------------------------------------------------------------


def high_frequency_energy(image: np.ndarray) -> float:
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
    freq = np.hypot(*np.meshgrid(*(np.fft.fftshift(np.fft.fftfreq(n)) for n in image.shape),
                                 indexing="ij"))
    return float(spectrum[freq > 0.25].sum())


def test_blur_reduces_high_frequency_energy_and_keeps_the_mean():
    image = np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32)
    out = GaussianBlur(sigma=(1.5, 1.5))(image, np.random.default_rng(0))
    assert high_frequency_energy(out) < 0.01 * high_frequency_energy(image)
    assert out.mean() == pytest.approx(image.mean(), abs=1e-3)


def test_blur_does_not_pull_the_shutter_into_the_field():
    valid = round_field()
    image = shuttered(np.full((SIZE, SIZE), 0.6, np.float32), valid)
    out = GaussianBlur(sigma=(3.0, 3.0))(image, np.random.default_rng(0), valid)
    np.testing.assert_allclose(out[valid], 0.6, atol=1e-5)


# --- Gaussian contrast ------------------------------------------------------------------------


def test_random_field_is_standardised_and_smooth():
    field = smooth_random_field((128, 160), 30.0, np.random.default_rng(0))
    assert field.shape == (128, 160) and field.dtype == np.float32
    assert field.mean() == pytest.approx(0.0, abs=1e-5)
    assert field.std() == pytest.approx(1.0, abs=1e-4)
    # A unit-std field correlated over 30 px changes by a few hundredths per pixel, white noise
    # by more than 1.
    assert np.abs(np.diff(field, axis=0)).max() < 0.2
    assert np.abs(np.diff(field, axis=1)).max() < 0.2


def test_contrast_field_is_smooth_with_the_requested_strength():
    image = np.full((128, 128), 0.5, np.float32)
    additive = GaussianContrast(multiplicative_strength=(0.0, 0.0), additive_strength=(0.1, 0.1),
                                correlation_length=(0.25, 0.25))
    delta = additive(image, np.random.default_rng(4)) - image
    assert delta.std() == pytest.approx(0.1, rel=0.02)
    assert np.abs(np.diff(delta, axis=0)).max() < 0.01
    assert np.abs(np.diff(delta, axis=1)).max() < 0.01


def test_contrast_gain_scales_the_image():
    image = phantom()
    gain_only = GaussianContrast(multiplicative_strength=(0.2, 0.2), additive_strength=(0.0, 0.0))
    ratio = gain_only(image, np.random.default_rng(1))[image > 0.1] / image[image > 0.1]
    assert np.log(ratio).std() == pytest.approx(0.2, rel=0.25)
    assert ratio.min() > 0


# --- random window ----------------------------------------------------------------------------


def test_window_maps_low_to_zero_and_high_to_one():
    window = RandomWindow(level=(0.3, 0.6), width=(0.3, 0.6), gamma=(0.5, 2.0))
    low, high, gamma = window.sample_window(np.random.default_rng(8))
    assert 0.5 <= gamma <= 2.0 and 0.3 <= high - low <= 0.6
    image = np.linspace(0, 1, SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
    image.flat[:2] = (low, high)
    out = window(image, np.random.default_rng(8))
    assert out.flat[0] == pytest.approx(0.0, abs=1e-5)
    assert out.flat[1] == pytest.approx(1.0, abs=1e-5)
    assert np.all(out[image <= low] == 0.0) and np.all(out[image >= high] == 1.0)
    # A window (with its gamma) is monotonic.
    inside = (image > low) & (image < high)
    assert np.all(np.diff(out[inside]) >= 0)


def test_apply_window_linear_and_gamma():
    image = np.array([[0.2, 0.4, 0.6]], np.float32)
    np.testing.assert_allclose(apply_window(image, 0.2, 0.6), [[0.0, 0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(apply_window(image, 0.2, 0.6, gamma=2.0), [[0.0, 0.25, 1.0]],
                               atol=1e-6)
    with pytest.raises(ValueError):
        apply_window(image, 0.5, 0.5)


# --- CLAHE ------------------------------------------------------------------------------------


def reference_clahe(image: np.ndarray, tiles: tuple[int, int], clip_limit: float,
                    bins: int) -> np.ndarray:
    """Straightforward per-tile, per-pixel loops; slow but easy to check by eye."""
    height, width = image.shape
    row_edges = np.round(np.linspace(0, height, tiles[0] + 1)).astype(int)
    col_edges = np.round(np.linspace(0, width, tiles[1] + 1)).astype(int)
    scaled = np.clip(image, 0, 1) * bins
    index = np.minimum(np.floor(scaled).astype(int), bins - 1)

    def transfer(tile_r: int, tile_c: int, value_bin: int, frac: float) -> float:
        block = index[row_edges[tile_r]:row_edges[tile_r + 1],
                      col_edges[tile_c]:col_edges[tile_c + 1]]
        hist = np.array([(block == b).sum() for b in range(bins)], float)
        limit = max(clip_limit * block.size / bins, 1.0)
        excess = sum(max(h - limit, 0.0) for h in hist)
        hist = np.array([min(h, limit) + excess / bins for h in hist]) / block.size
        return hist[:value_bin].sum() + frac * hist[value_bin]

    def neighbours(position: float, edges: np.ndarray) -> tuple[int, int, float]:
        centres = (edges[:-1] + edges[1:]) / 2
        if position <= centres[0]:
            return 0, 0, 0.0
        if position >= centres[-1]:
            return len(centres) - 1, len(centres) - 1, 0.0
        first = int(np.searchsorted(centres, position, side="right") - 1)
        return first, first + 1, (position - centres[first]) / (centres[first + 1] - centres[first])

    out = np.zeros_like(image, dtype=float)
    for r in range(height):
        r0, r1, wr = neighbours(r + 0.5, row_edges)
        for c in range(width):
            c0, c1, wc = neighbours(c + 0.5, col_edges)
            b, f = index[r, c], scaled[r, c] - index[r, c]
            top = (1 - wc) * transfer(r0, c0, b, f) + wc * transfer(r0, c1, b, f)
            bottom = (1 - wc) * transfer(r1, c0, b, f) + wc * transfer(r1, c1, b, f)
            out[r, c] = (1 - wr) * top + wr * bottom
    return out


def test_clahe_matches_a_loop_reference():
    image = np.random.default_rng(2).beta(2, 5, (22, 27)).astype(np.float32)
    out = clahe(image, tiles=(3, 4), clip_limit=1.5, bins=16)
    np.testing.assert_allclose(out, reference_clahe(image, (3, 4), 1.5, 16), atol=1e-5)


def test_clahe_increases_local_contrast_of_a_flat_image():
    yy, xx = np.mgrid[0:128, 0:128] / 128
    image = (0.45 + 0.03 * np.sin(25 * xx) * np.sin(19 * yy) + 0.1 * yy).astype(np.float32)
    out = clahe(image, tiles=(4, 4), clip_limit=3.0)
    assert local_std(out) > 3 * local_std(image)
    # Global histogram spreads out too.
    assert np.ptp(out) > 2 * np.ptp(image)


def test_clahe_is_monotonic_within_a_tile():
    image = np.random.default_rng(6).random((64, 64)).astype(np.float32)
    out = clahe(image, tiles=(2, 2), clip_limit=2.0)
    # Beyond the outer tile centres, pixels use the corner tile's transfer function alone.
    corner_in, corner_out = image[:16, :16].ravel(), out[:16, :16].ravel()
    order = np.argsort(corner_in)
    assert np.all(np.diff(corner_out[order]) >= -1e-6)
    assert np.diff(corner_out[order]).max() > 0
    # With one tile the whole image shares a single monotonic transfer function.
    single = clahe(image, tiles=(1, 1), clip_limit=2.0)
    assert np.all(np.diff(single.ravel()[np.argsort(image.ravel())]) >= -1e-6)


def test_clahe_unclipped_single_tile_is_histogram_equalisation():
    image = np.random.default_rng(1).beta(5, 2, (64, 64)).astype(np.float32)
    out = clahe(image, tiles=(1, 1), clip_limit=1e6, bins=4096)
    # Equalisation maps a value to its quantile, so the output is close to uniform.
    np.testing.assert_allclose(np.sort(out.ravel()), np.linspace(0, 1, out.size), atol=2e-3)


def test_clahe_statistics_ignore_the_shutter():
    valid = np.zeros((64, 64), bool)
    valid[:, :20] = True  # whole tiles on the right have no exposed pixel
    image = shuttered(np.random.default_rng(3).random((64, 64)).astype(np.float32), valid)
    out = clahe(image, tiles=(4, 4), clip_limit=1e6, valid=valid)
    assert np.all(out[~valid] == 0)
    # The black shutter is not counted, so the exposed pixels still spread over [0, 1].
    assert out[valid].min() < 0.05 and out[valid].max() > 0.95


# --- noise ------------------------------------------------------------------------------------


def test_quantum_noise_variance_grows_with_signal():
    image = np.zeros((200, 200), np.float32)
    image[:, :100], image[:, 100:] = 0.2, 0.8
    noise = Noise(quantum_strength=(0.05, 0.05), read_noise=(0.0, 0.0))
    delta = noise(image, np.random.default_rng(0)) - image
    dark, bright = delta[:, :100].var(), delta[:, 100:].var()
    assert dark == pytest.approx(0.05 ** 2 * 0.2, rel=0.05)
    assert bright == pytest.approx(0.05 ** 2 * 0.8, rel=0.05)
    assert abs(delta.mean()) < 1e-3


def test_read_noise_is_signal_independent():
    image = np.zeros((200, 200), np.float32)
    image[:, :100], image[:, 100:] = 0.2, 0.8
    delta = Noise(quantum_strength=(0, 0), read_noise=(0.02, 0.02))(
        image, np.random.default_rng(0)) - image
    assert delta[:, :100].std() == pytest.approx(0.02, rel=0.05)
    assert delta[:, 100:].std() == pytest.approx(0.02, rel=0.05)


# --- composer ---------------------------------------------------------------------------------


def test_composer_probability_zero_and_one():
    image = phantom()
    never = SimToRealAugmenter(**{f"p_{stage}": 0.0 for stage in STAGES})
    for seed in range(20):
        assert never.sample_plan(np.random.default_rng(seed)) == ()
        assert ALL_ON.sample_plan(np.random.default_rng(seed)) == STAGES
    np.testing.assert_array_equal(never(image, np.random.default_rng(0)), image)
    np.testing.assert_array_equal(NO_AUGMENTATION(image, np.random.default_rng(0)), image)
    assert SimToRealAugmenter.identity().sample_plan(np.random.default_rng(0)) == ()
    assert not np.array_equal(ALL_ON(image, np.random.default_rng(0)), image)


def test_composer_applies_the_stages_in_order():
    image = phantom()
    only_invert = SimToRealAugmenter(**{f"p_{stage}": float(stage == "inversion")
                                        for stage in STAGES})
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(only_invert(image, rng), 1 - image, atol=1e-7)
    # Same draws by hand: plan first, then each stage with the same generator.
    augmenter = ALL_ON
    by_hand_rng = np.random.default_rng(9)
    plan = augmenter.sample_plan(by_hand_rng)
    expected = image
    for stage in plan:
        expected = getattr(augmenter, stage)(expected, by_hand_rng)
    np.testing.assert_array_equal(augmenter(image, np.random.default_rng(9)), expected)


def test_composer_stage_frequency_follows_probability():
    augmenter = SimToRealAugmenter(p_noise=0.3, p_clahe=0.7)
    rng = np.random.default_rng(0)
    plans = [augmenter.sample_plan(rng) for _ in range(4000)]
    assert np.mean(["noise" in p for p in plans]) == pytest.approx(0.3, abs=0.03)
    assert np.mean(["clahe" in p for p in plans]) == pytest.approx(0.7, abs=0.03)


def test_config_round_trips_through_yaml():
    custom = SimToRealAugmenter(gaussian_blur=GaussianBlur(sigma=(0.2, 3.0)),
                                clahe=CLAHE(tile_grid=(2, 6), bins=128), p_inversion=0.5)
    text = yaml.safe_dump(custom.to_dict())
    restored = SimToRealAugmenter.from_dict(yaml.safe_load(text))
    assert restored == custom
    assert restored.to_dict()["gaussian_blur"] == {"p": 0.3, "sigma": [0.2, 3.0]}
    assert SimToRealAugmenter.from_dict(None) == SimToRealAugmenter()
    assert SimToRealAugmenter.from_dict({"enabled": False}) == NO_AUGMENTATION
    partial = SimToRealAugmenter.from_dict({"noise": {"p": 1.0}})
    assert partial.p_noise == 1.0 and partial.noise == Noise()


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown"):
        SimToRealAugmenter.from_dict({"gaussian_blurr": {}})
    with pytest.raises(ValueError, match="unknown"):
        SimToRealAugmenter.from_dict({"noise": {"strength": [0, 1]}})


def test_augmenters_are_immutable_and_hashable():
    augmenter = SimToRealAugmenter()
    with pytest.raises(Exception):
        augmenter.p_noise = 0.0  # type: ignore[misc]
    assert hash(augmenter) == hash(copy.deepcopy(augmenter))
