"""Image-level augmentations for sim-to-real transfer (FluoroSAM's list, plus noise).

FluoroSAM is trained only on DRRs rendered from CT, so every difference between a DRR and a
real fluoroscopy frame that the renderer does not model has to be covered by randomisation.
The paper's list is coarse dropout, inversion, blur, Gaussian contrast, random windowing and
CLAHE; detector noise is added here because our DRRs are often rendered noise-free.

Conventions shared by every augmentation:

* `image` is a (H, W) float array of display values in [0, 1] (dense tissue bright, air dark),
  as produced by `DetectorModel.display`.
* `valid` is an optional (H, W) boolean mask of exposed pixels. Pixels outside it (behind the
  collimator, normally 0) are returned exactly as they came in: real shutters block the beam,
  so nothing that happens to the X-rays can change them, and statistics (CLAHE histograms,
  blur) are taken over the exposed pixels only so the black shutter does not bleed inwards.
  `valid=None` means every pixel is exposed.
* Each augmentation is a frozen dataclass of parameter ranges; calling it with an image and a
  `np.random.Generator` draws its parameters from that generator and returns a new float32
  array in [0, 1]. The same generator state gives the same output.
* All of them act on intensities only. Structure masks are never touched: in particular coarse
  dropout hides image content but keeps the ground truth, deliberately, because the model has
  to segment through occluders (instruments, hands, leads) the way a clinician reads through
  them.

`SimToRealAugmenter` composes them with per-augmentation probabilities in a fixed,
physically ordered pipeline (scene, exposure, detector, display) and round-trips through plain
dicts so it can be configured from YAML.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

Range = tuple[float, float]


class Augmentation(Protocol):
    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _check_range(name: str, value: tuple[float, float], lower: float = -math.inf,
                 upper: float = math.inf) -> None:
    if len(value) != 2 or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be a finite (low, high) pair, got {value!r}")
    low, high = value
    if not lower <= low <= high <= upper:
        raise ValueError(f"{name} must satisfy {lower} <= low <= high <= {upper}, got {value!r}")


def _uniform(rng: np.random.Generator, value_range: Range) -> float:
    return float(rng.uniform(value_range[0], value_range[1]))


def _log_uniform(rng: np.random.Generator, value_range: Range) -> float:
    return float(math.exp(rng.uniform(math.log(value_range[0]), math.log(value_range[1]))))


def _integer(rng: np.random.Generator, value_range: tuple[int, int]) -> int:
    """Uniform integer in the inclusive range."""
    return int(rng.integers(value_range[0], value_range[1] + 1))


def _prepare(image: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    if valid is None:
        return image, None
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != image.shape:
        raise ValueError(f"valid has shape {valid.shape}, image has {image.shape}")
    return image, valid


def _finish(result: np.ndarray, image: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Clip to the display range and put the shuttered pixels back as they were."""
    out = np.clip(result, 0.0, 1.0).astype(np.float32, copy=False)
    if valid is not None:
        out = np.where(valid, out, image).astype(np.float32, copy=False)
    return out


# ---------------------------------------------------------------------------------------------
# 1. Coarse dropout


@dataclass(frozen=True)
class CoarseDropout:
    """Blank a few random rectangles with a constant grey level or with uniform noise.

    Simulates what a CT never contains but real fluoroscopy often does: instruments, lead
    aprons, the surgeon's hands, ECG leads and labels overlapping the anatomy, plus burned-in
    annotations. The structure masks are kept on purpose so the model learns to segment
    through occlusions.

    `num_holes`: inclusive integer range of rectangles. `hole_size`: height and width, each
    drawn independently as a fraction of the image's height / width. `fill_value`: range of the
    constant grey level. `noise_probability`: chance that a hole is filled with uniform noise
    (over `fill_value`) instead of a constant. Only exposed pixels are changed.
    """

    num_holes: tuple[int, int] = (1, 6)
    hole_size: Range = (0.04, 0.2)
    fill_value: Range = (0.0, 1.0)
    noise_probability: float = 0.25

    def __post_init__(self) -> None:
        _check_range("num_holes", self.num_holes, 0)
        _check_range("hole_size", self.hole_size, 0.0, 1.0)
        _check_range("fill_value", self.fill_value, 0.0, 1.0)
        _check_range("noise_probability", (self.noise_probability,) * 2, 0.0, 1.0)

    def sample_holes(self, shape: tuple[int, int],
                     rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
        """The rectangles (top, left, height, width) a call with this rng state would blank."""
        height, width = shape
        holes = []
        for _ in range(_integer(rng, self.num_holes)):
            h = min(height, max(1, round(_uniform(rng, self.hole_size) * height)))
            w = min(width, max(1, round(_uniform(rng, self.hole_size) * width)))
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            holes.append((top, left, h, w))
        return holes

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        image, valid = _prepare(image, valid)
        out = image.copy()
        for top, left, h, w in self.sample_holes(image.shape, rng):
            if rng.random() < self.noise_probability:
                fill = rng.uniform(self.fill_value[0], self.fill_value[1], (h, w))
            else:
                fill = _uniform(rng, self.fill_value)
            out[top:top + h, left:left + w] = fill
        return _finish(out, image, valid)


# ---------------------------------------------------------------------------------------------
# 2. Inversion


@dataclass(frozen=True)
class Inversion:
    """Invert the display: `1 - image` on the exposed pixels.

    Some C-arms, PACS viewers and DSA/roadmap modes show bone dark and air bright. Inverting
    keeps the model from tying a structure to a fixed polarity. The shutter stays as it was
    (black), which is what the display pipeline produces before inversion is applied and keeps
    the collimator outline an unchanged cue.
    """

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        image, valid = _prepare(image, valid)
        return _finish(1.0 - image, image, valid)


# ---------------------------------------------------------------------------------------------
# 3. Gaussian blur


@dataclass(frozen=True)
class GaussianBlur:
    """Isotropic Gaussian blur with `sigma` (pixels) drawn uniformly from its range.

    Simulates the unsharpness a DRR does not have: focal-spot size, scintillator light spread
    in the detector, image-intensifier optics, patient motion within the exposure and the
    resampling done by the imaging chain. With `valid`, the blur is normalised over the exposed
    pixels only, so the black shutter does not darken the field edge.
    """

    sigma: Range = (0.5, 2.0)

    def __post_init__(self) -> None:
        _check_range("sigma", self.sigma, 0.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        image, valid = _prepare(image, valid)
        sigma = _uniform(rng, self.sigma)
        if sigma <= 0.0:
            return _finish(image, image, valid)
        if valid is None:
            return _finish(ndimage.gaussian_filter(image, sigma, mode="reflect"), image, valid)
        weight = valid.astype(np.float32)
        numerator = ndimage.gaussian_filter(image * weight, sigma, mode="reflect")
        denominator = ndimage.gaussian_filter(weight, sigma, mode="reflect")
        # Every exposed pixel carries its own weight, so the denominator is positive there.
        blurred = numerator / np.maximum(denominator, 1e-6)
        return _finish(blurred, image, valid)


# ---------------------------------------------------------------------------------------------
# 4. Gaussian contrast (smooth intensity field)


def _interpolation_matrix(n_out: int, n_in: int, positions: np.ndarray) -> np.ndarray:
    """(n_out, n_in) matrix that linearly interpolates samples 0..n_in-1 at `positions`."""
    positions = np.clip(positions, 0.0, n_in - 1.0)
    lower = np.minimum(np.floor(positions).astype(int), n_in - 2) if n_in > 1 else np.zeros(
        n_out, dtype=int)
    frac = positions - lower
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    matrix[rows, lower] = 1.0 - frac
    if n_in > 1:
        matrix[rows, lower + 1] += frac
    return matrix


def smooth_random_field(shape: tuple[int, int], correlation_px: float,
                        rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-std Gaussian random field with Gaussian correlation of `correlation_px`.

    White noise smoothed with a Gaussian of that sigma, computed on a grid four samples per
    sigma (the field has no detail finer than that) with a 3-sigma margin so the borders have
    the same statistics as the centre, then bilinearly upsampled with two small matrices.
    """
    height, width = shape
    step = max(1.0, correlation_px / 4.0)
    sigma_coarse = correlation_px / step
    margin = int(math.ceil(3.0 * sigma_coarse))
    coarse_h = int(math.ceil(height / step)) + 1 + 2 * margin
    coarse_w = int(math.ceil(width / step)) + 1 + 2 * margin
    noise = rng.standard_normal((coarse_h, coarse_w)).astype(np.float32)
    coarse = ndimage.gaussian_filter(noise, sigma_coarse, mode="wrap")
    rows = margin + (np.arange(height) + 0.5) / step
    cols = margin + (np.arange(width) + 0.5) / step
    field_ = _interpolation_matrix(height, coarse_h, rows) @ coarse @ _interpolation_matrix(
        width, coarse_w, cols).T
    std = float(field_.std())
    return ((field_ - field_.mean()) / max(std, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class GaussianContrast:
    """Spatially smooth, low-frequency intensity variation: `image * exp(m * F1) + a * F2`.

    F1 and F2 are independent zero-mean, unit-std Gaussian random fields whose correlation
    length (Gaussian sigma) is `correlation_length` times the image's larger side. Simulates
    what a DRR's perfectly uniform source and detector lack: the anode heel effect, image
    intensifier vignetting, uneven exposure and automatic brightness control, scatter that
    lifts the background unevenly, and detector gain drift. In the log display these are mostly
    additive offsets (`additive_strength`, the std of the offset); the multiplicative part
    (`multiplicative_strength`, the std of the log gain) varies local contrast as well.
    """

    multiplicative_strength: Range = (0.0, 0.25)
    additive_strength: Range = (0.0, 0.12)
    correlation_length: Range = (0.2, 0.6)

    def __post_init__(self) -> None:
        _check_range("multiplicative_strength", self.multiplicative_strength, 0.0)
        _check_range("additive_strength", self.additive_strength, 0.0)
        _check_range("correlation_length", self.correlation_length, 1e-3)

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        image, valid = _prepare(image, valid)
        gain_std = _uniform(rng, self.multiplicative_strength)
        offset_std = _uniform(rng, self.additive_strength)
        correlation_px = _uniform(rng, self.correlation_length) * max(image.shape)
        gain = np.exp(gain_std * smooth_random_field(image.shape, correlation_px, rng))
        offset = offset_std * smooth_random_field(image.shape, correlation_px, rng)
        return _finish(image * gain + offset, image, valid)


# ---------------------------------------------------------------------------------------------
# 5. Random windowing


def apply_window(image: np.ndarray, low: float, high: float, gamma: float = 1.0,
                 valid: np.ndarray | None = None) -> np.ndarray:
    """Map [low, high] linearly onto [0, 1] with clipping, then raise to `gamma`."""
    if not high > low:
        raise ValueError(f"window needs high > low, got [{low}, {high}]")
    image, valid = _prepare(image, valid)
    scaled = np.clip((image - np.float32(low)) / np.float32(high - low), 0.0, 1.0)
    if gamma != 1.0:
        scaled = scaled ** np.float32(gamma)
    return _finish(scaled, image, valid)


@dataclass(frozen=True)
class RandomWindow:
    """Random window level/width and gamma on the display values.

    Real frames arrive with whatever windowing, auto-brightness and gamma (look-up table) the
    vendor's chain applied; DRRs are windowed one fixed way. The window is [level - width/2,
    level + width/2] in display units, so a narrow width raises contrast and clips tissue while a
    width above 1 flattens it; gamma is drawn log-uniformly so brightening and darkening are
    equally likely. Set `gamma=(1, 1)` for a purely linear window.
    """

    level: Range = (0.35, 0.65)
    width: Range = (0.5, 1.3)
    gamma: Range = (0.7, 1.4)

    def __post_init__(self) -> None:
        _check_range("level", self.level)
        _check_range("width", self.width, 1e-3)
        _check_range("gamma", self.gamma, 1e-3)

    def sample_window(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """(low, high, gamma) that a call with this rng state would use."""
        level = _uniform(rng, self.level)
        width = _uniform(rng, self.width)
        return level - width / 2.0, level + width / 2.0, _log_uniform(rng, self.gamma)

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        low, high, gamma = self.sample_window(rng)
        return apply_window(image, low, high, gamma, valid)


# ---------------------------------------------------------------------------------------------
# 6. CLAHE


def _tile_edges(length: int, tiles: int) -> np.ndarray:
    return np.round(np.linspace(0, length, tiles + 1)).astype(int)


def _clipped_transfer(hist: np.ndarray, clip_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row clipped histograms -> (cdf at each bin's lower edge, bin mass), both normalised.

    Counts above `clip_limit` times the mean bin count are cut and spread evenly over all bins
    (one pass, as is usual), which caps the slope of the transfer function and so the noise
    amplification in flat regions.
    """
    counts = hist.sum(axis=1, keepdims=True)
    limit = np.maximum(clip_limit * counts / hist.shape[1], 1.0)
    excess = np.clip(hist - limit, 0.0, None).sum(axis=1, keepdims=True)
    clipped = np.minimum(hist, limit) + excess / hist.shape[1]
    mass = clipped / np.maximum(counts, 1e-12)
    cdf_low = np.cumsum(mass, axis=1) - mass
    return cdf_low, mass


def _interpolation_weights(length: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """For each pixel along one axis: the two neighbouring tile indices and the weight of the
    second, from pixel centres relative to tile centres (clamped beyond the outer centres)."""
    tiles = len(edges) - 1
    centres = (edges[:-1] + edges[1:]) / 2.0
    position = np.interp(np.arange(length) + 0.5, centres, np.arange(tiles, dtype=float))
    first = np.minimum(np.floor(position).astype(int), max(tiles - 2, 0))
    second = np.minimum(first + 1, tiles - 1)
    return first, second, (position - first).astype(np.float32)


def clahe(image: np.ndarray, tiles: tuple[int, int] = (8, 8), clip_limit: float = 2.0,
          bins: int = 256, valid: np.ndarray | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a [0, 1] image.

    The image is split into a `tiles` (rows, cols) grid; each tile gets a clipped-histogram
    equalisation transfer function computed from its exposed pixels; each pixel's output is the
    bilinear blend of the transfer functions of the four tiles whose centres surround it.
    Transfer functions are piecewise linear within a bin rather than stepped, so a float image
    is not posterised to `bins` levels. A tile with no exposed pixels borrows the transfer
    function of the whole exposed area so the collimator edge blends smoothly.
    """
    image, valid = _prepare(image, valid)
    if clip_limit <= 0 or bins < 2:
        raise ValueError("clip_limit must be positive and bins at least 2")
    height, width = image.shape
    row_edges = _tile_edges(height, max(1, min(tiles[0], height)))
    col_edges = _tile_edges(width, max(1, min(tiles[1], width)))
    n_rows, n_cols = len(row_edges) - 1, len(col_edges) - 1

    scaled = np.clip(image, 0.0, 1.0) * np.float32(bins)
    bin_index = np.minimum(scaled.astype(np.int32), bins - 1)
    within_bin = scaled - bin_index.astype(np.float32)

    tile_row = np.repeat(np.arange(n_rows), np.diff(row_edges))
    tile_col = np.repeat(np.arange(n_cols), np.diff(col_edges))
    flat = ((tile_row[:, None] * n_cols + tile_col[None, :]) * bins + bin_index).ravel()
    weights = None if valid is None else valid.ravel().astype(np.float64)
    hist = np.bincount(flat, weights=weights, minlength=n_rows * n_cols * bins).reshape(
        n_rows * n_cols, bins)

    empty = hist.sum(axis=1) == 0
    if empty.any():
        hist[empty] = hist.sum(axis=0)
    cdf_low, mass = _clipped_transfer(hist, clip_limit)
    cdf_low = cdf_low.astype(np.float32).ravel()
    mass = mass.astype(np.float32).ravel()

    r0, r1, wr = _interpolation_weights(height, row_edges)
    c0, c1, wc = _interpolation_weights(width, col_edges)

    def transfer(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # Flat int32 indices with np.take: several times faster than broadcast tuple indexing.
        row_base = (rows * (n_cols * bins)).astype(np.int32)[:, None]
        col_base = (cols * bins).astype(np.int32)[None, :]
        index = (row_base + col_base) + bin_index
        return np.take(cdf_low, index) + within_bin * np.take(mass, index)

    top = (1.0 - wc) * transfer(r0, c0) + wc * transfer(r0, c1)
    bottom = (1.0 - wc) * transfer(r1, c0) + wc * transfer(r1, c1)
    result = (1.0 - wr[:, None]) * top + wr[:, None] * bottom
    return _finish(result, image, valid)


@dataclass(frozen=True)
class CLAHE:
    """CLAHE with a random clip limit and a random square tile grid.

    Many fluoroscopy and radiography chains apply local contrast enhancement (multi-scale
    processing, edge enhancement) whose look is close to CLAHE: flattened large-scale
    brightness, boosted local bone and soft-tissue contrast, amplified noise. `tile_grid` is an
    inclusive integer range of tiles per side; `clip_limit` is in units of the mean bin count.
    """

    clip_limit: Range = (1.5, 4.0)
    tile_grid: tuple[int, int] = (4, 8)
    bins: int = 256

    def __post_init__(self) -> None:
        _check_range("clip_limit", self.clip_limit, 1e-3)
        _check_range("tile_grid", self.tile_grid, 1)
        if self.bins < 2:
            raise ValueError("bins must be at least 2")

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        clip_limit = _uniform(rng, self.clip_limit)
        grid = _integer(rng, self.tile_grid)
        return clahe(image, (grid, grid), clip_limit, self.bins, valid)


# ---------------------------------------------------------------------------------------------
# 7. Noise


@dataclass(frozen=True)
class Noise:
    """Signal-dependent (quantum) plus signal-independent (read/electronic) Gaussian noise.

    Per pixel the added noise has variance `q**2 * image + r**2`, with `q` drawn from
    `quantum_strength` (the noise std at display value 1) and `r` from `read_noise`. In the
    neg-log display, bright pixels are the ones behind the most attenuation, which received the
    fewest photons, so their quantum noise is the largest; the variance growing with the
    display value is the right direction, and a Gaussian approximation of the Poisson term
    avoids posterising the image at low doses. Covers low-dose frames and the noise-free or
    differently-dosed DRRs. Shuttered pixels stay untouched.
    """

    quantum_strength: Range = (0.0, 0.06)
    read_noise: Range = (0.0, 0.02)

    def __post_init__(self) -> None:
        _check_range("quantum_strength", self.quantum_strength, 0.0)
        _check_range("read_noise", self.read_noise, 0.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        image, valid = _prepare(image, valid)
        quantum = _uniform(rng, self.quantum_strength)
        read = _uniform(rng, self.read_noise)
        std = np.sqrt(np.float32(quantum**2) * np.clip(image, 0.0, None) + np.float32(read**2))
        noisy = image + std * rng.standard_normal(image.shape, dtype=np.float32)
        return _finish(noisy, image, valid)


# ---------------------------------------------------------------------------------------------
# Composer


STAGES: tuple[str, ...] = ("coarse_dropout", "gaussian_contrast", "gaussian_blur", "noise",
                           "random_window", "clahe", "inversion")
"""Application order: what is in the beam (occluders), then exposure, then the detector (blur
before noise: read noise is not blurred), then display processing (window, CLAHE, polarity)."""

_STAGE_TYPES: dict[str, type] = {
    "coarse_dropout": CoarseDropout, "gaussian_contrast": GaussianContrast,
    "gaussian_blur": GaussianBlur, "noise": Noise, "random_window": RandomWindow,
    "clahe": CLAHE, "inversion": Inversion,
}


@dataclass(frozen=True)
class SimToRealAugmenter:
    """Apply each augmentation with its own probability, in the fixed order of `STAGES`.

    `p_<stage>` is the chance that stage runs on a given image; `enabled=False` (or
    `SimToRealAugmenter.identity()`, `NO_AUGMENTATION`) returns images unchanged. The dict
    form, for YAML, is `{"enabled": bool, "<stage>": {"p": float, <that dataclass's fields>}}`;
    missing entries keep their defaults and unknown keys are an error.
    """

    coarse_dropout: CoarseDropout = field(default_factory=CoarseDropout)
    gaussian_contrast: GaussianContrast = field(default_factory=GaussianContrast)
    gaussian_blur: GaussianBlur = field(default_factory=GaussianBlur)
    noise: Noise = field(default_factory=Noise)
    random_window: RandomWindow = field(default_factory=RandomWindow)
    clahe: CLAHE = field(default_factory=CLAHE)
    inversion: Inversion = field(default_factory=Inversion)
    p_coarse_dropout: float = 0.3
    p_gaussian_contrast: float = 0.5
    p_gaussian_blur: float = 0.3
    p_noise: float = 0.5
    p_random_window: float = 0.5
    p_clahe: float = 0.25
    p_inversion: float = 0.15
    enabled: bool = True

    def __post_init__(self) -> None:
        for stage in STAGES:
            probability = self.probability(stage)
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"p_{stage} must be in [0, 1], got {probability}")

    @classmethod
    def identity(cls) -> SimToRealAugmenter:
        return cls(enabled=False)

    def probability(self, stage: str) -> float:
        return float(getattr(self, f"p_{stage}"))

    def sample_plan(self, rng: np.random.Generator) -> tuple[str, ...]:
        """The stages a call with this rng state will apply, in order."""
        if not self.enabled:
            return ()
        # One draw per stage whatever the probabilities, so changing one probability does not
        # reshuffle the decisions of the others.
        draws = rng.random(len(STAGES))
        return tuple(s for s, u in zip(STAGES, draws) if u < self.probability(s))

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 valid: np.ndarray | None = None) -> np.ndarray:
        image, valid = _prepare(image, valid)
        plan = self.sample_plan(rng)
        logger.debug("augmenting with %s", plan)
        out = image.copy()
        for stage in plan:
            out = getattr(self, stage)(out, rng, valid)
        return out

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"enabled": self.enabled}
        for stage in STAGES:
            params = {f.name: _plain(getattr(getattr(self, stage), f.name))
                      for f in dataclasses.fields(_STAGE_TYPES[stage])}
            result[stage] = {"p": self.probability(stage), **params}
        return result

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | None) -> SimToRealAugmenter:
        """Build from the `to_dict` form (e.g. a YAML mapping); None gives the defaults."""
        config = dict(config or {})
        unknown = set(config) - set(STAGES) - {"enabled"}
        if unknown:
            raise ValueError(f"unknown augmentation entries {sorted(unknown)}; known: "
                             f"{['enabled', *STAGES]}")
        kwargs: dict[str, Any] = {}
        if "enabled" in config:
            kwargs["enabled"] = bool(config["enabled"])
        for stage in STAGES:
            if stage not in config:
                continue
            params = dict(config[stage] or {})
            if "p" in params:
                kwargs[f"p_{stage}"] = float(params.pop("p"))
            kwargs[stage] = _stage_from_dict(stage, params)
        return cls(**kwargs)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _stage_from_dict(stage: str, params: Mapping[str, Any]) -> Any:
    stage_type = _STAGE_TYPES[stage]
    names = {f.name for f in dataclasses.fields(stage_type)}
    unknown = set(params) - names
    if unknown:
        raise ValueError(f"{stage}: unknown parameters {sorted(unknown)}; known: {sorted(names)}")
    # YAML gives lists; the dataclasses hold tuples so they stay hashable and immutable.
    return stage_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


NO_AUGMENTATION = SimToRealAugmenter.identity()
