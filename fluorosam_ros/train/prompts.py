"""Training prompts from shard samples: which mask a prompt asks for, SAM-style correction
clicks, and the per-prompt loss weights.

A sample's metadata (see `data/shards.py`) lists its mask records, each with prompt dicts whose
`units` say which masks answer them (`data/text.py`): a comprehensive prompt has one unit whose
visible members' union is the answer; a non-comprehensive one has several, and the union of any
ONE unit is a correct answer, so training picks one present unit per draw. Tool records carry
prompts without units: their answer is the tool's own mask.

Points are (x = column, y = row) in the sample's pixels; the prompt encoder adds the +0.5
pixel-centre shift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

# Give up after this many draws that found no target (a record whose prompts name nothing
# stored): the sample is then unusable for positive prompts.
MAX_DRAWS = 64
# Correction clicks go to pixels at least this fraction of the deepest distance into the error
# region, so repeated rounds do not always hit the same pixel of a symmetric region.
CLICK_DEPTH_FRACTION = 0.9


@dataclass
class PromptSamplerConfig:
    """Probabilities of the prompt kinds. `text_only_probability` is the chance that a text
    prompt stays text-only (no correction clicks, see `correction_clicks`); `max_points` bounds
    the clicks per prompt. `canonical_text_probability` is the chance that a text prompt is the
    structure's canonical name (with the structure's own mask) rather than one of its phrasings:
    the planner asks with canonical names, and a small head learns them from fewer examples."""

    max_points: int = 8
    negative_prompt_probability: float = 0.1
    text_only_probability: float = 0.5
    point_only_probability: float = 0.1
    canonical_text_probability: float = 0.0


@dataclass
class TrainingPrompt:
    text: str | None
    target: np.ndarray        # (H, W) bool; empty when absent
    absent: bool
    points: np.ndarray        # (N, 2) float, (x = column, y = row)
    labels: np.ndarray        # (N,) int, 1 positive / 0 negative
    mask_name: str
    comprehensive: bool

    @property
    def has_text(self) -> bool:
        return self.text is not None


def _mask_index(sample) -> dict[str, int]:
    return {record["name"]: i for i, record in enumerate(sample.meta.get("masks", []))}


def _owner(prompt: dict, sample) -> str | None:
    """The name of the mask record holding this prompt dict (by identity, then equality)."""
    records = sample.meta.get("masks", [])
    for test in (lambda p: p is prompt, lambda p: p == prompt):
        for record in records:
            if any(test(p) for p in record.get("prompts", [])):
                return record["name"]
    return None


def _union(names, index: dict[str, int], sample) -> np.ndarray | None:
    rows = [index[name] for name in names if name in index]
    if not rows:
        return None
    union = sample.masks[rows].any(axis=0)
    return union if union.any() else None


def target_for_prompt(prompt: dict, sample, rng: np.random.Generator | None = None,
                      mask_name: str | None = None) -> np.ndarray | None:
    """The (H, W) bool mask answering `prompt` in `sample`, or None when nothing it names is
    present. `rng` picks the unit of a non-comprehensive prompt; `mask_name` (the record the
    prompt belongs to) is only needed for tool prompts, and is looked up when not given."""
    index = _mask_index(sample)
    units = [list(unit) for unit in prompt.get("units") or []]
    if not units:
        # Tool prompts: the answer is the record's own mask.
        name = mask_name or prompt.get("target") or _owner(prompt, sample)
        return _union([name], index, sample) if name else None
    if prompt.get("comprehensive", True):
        stored = prompt.get("target")
        # A stored group mask is the union over ALL its members, including ones too small to be
        # stored on their own, so it is the better answer than the union of stored members.
        if stored in index and sample.masks[index[stored]].any():
            return sample.masks[index[stored]].copy()
        return _union([name for unit in units for name in unit], index, sample)
    present = [unit for unit in units if any(name in index for name in unit)]
    if not present:
        return None
    rng = rng if rng is not None else np.random.default_rng()
    order = rng.permutation(len(present))
    for i in order:
        union = _union(present[i], index, sample)
        if union is not None:
            return union
    return None


def _in_split(prompt: dict, split: str) -> bool:
    return prompt.get("split", split) == split


def _point_inside(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.nonzero(target)
    i = int(rng.integers(len(rows)))
    return np.array([[cols[i], rows[i]]], dtype=np.float64)


def _no_points() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), dtype=np.float64), np.zeros((0,), dtype=np.int64)


def _negative(sample, negatives: list[dict], rng: np.random.Generator) -> TrainingPrompt:
    prompt = negatives[int(rng.integers(len(negatives)))]
    points, labels = _no_points()
    return TrainingPrompt(prompt["text"], np.zeros(sample.image.shape[-2:], dtype=bool), True,
                          points, labels, prompt.get("target", ""),
                          bool(prompt.get("comprehensive", True)))


def sample_prompt(sample, rng: np.random.Generator, config: PromptSamplerConfig,
                  split: str = "train") -> TrainingPrompt:
    """One training prompt: a negative (absent) text prompt, a text prompt, or a point-only
    prompt with one positive click inside its target. Deterministic given `rng`."""
    negatives = [p for p in sample.meta.get("negatives", []) if _in_split(p, split)]
    records = sample.meta.get("masks", [])
    if negatives and (rng.random() < config.negative_prompt_probability or not records):
        return _negative(sample, negatives, rng)
    if not records:
        raise ValueError(f"sample {sample.key}: no masks and no negative prompts to train on")
    point_only = rng.random() < config.point_only_probability
    canonical = not point_only and rng.random() < config.canonical_text_probability
    for _ in range(MAX_DRAWS):
        index = int(rng.integers(len(records)))
        drawn = _draw_canonical(sample, index) if canonical else _draw(sample, index, point_only, rng, split)
        if drawn is not None:
            return drawn
    if negatives:
        log.warning("sample %s: no prompt found a target; using a negative", sample.key)
        return _negative(sample, negatives, rng)
    raise ValueError(f"sample {sample.key}: no prompt of any mask has a target")


def _draw_canonical(sample, index: int) -> TrainingPrompt | None:
    record = sample.meta["masks"][index]
    target = sample.masks[index]
    if not record.get("canonical") or not target.any():
        return None
    points, labels = _no_points()
    return TrainingPrompt(record["canonical"], target.copy(), False, points, labels, record["name"], True)


def _draw(sample, index: int, point_only: bool, rng: np.random.Generator,
          split: str) -> TrainingPrompt | None:
    record = sample.meta["masks"][index]
    if point_only:
        target = sample.masks[index]
        if not target.any():
            return None
        points = _point_inside(target, rng)
        return TrainingPrompt(None, target.copy(), False, points, np.ones(1, dtype=np.int64),
                              record["name"], True)
    prompts = [p for p in record.get("prompts", []) if _in_split(p, split)]
    if not prompts:
        return None
    prompt = prompts[int(rng.integers(len(prompts)))]
    target = target_for_prompt(prompt, sample, rng, mask_name=record["name"])
    if target is None:
        return None
    points, labels = _no_points()
    return TrainingPrompt(prompt["text"], target, False, points, labels, record["name"],
                          bool(prompt.get("comprehensive", True)))


def correction_clicks(prompt: TrainingPrompt, rng: np.random.Generator,
                      config: PromptSamplerConfig) -> int:
    """How many correction clicks to add to this prompt: none for absent prompts and (with
    `text_only_probability`) for text prompts, otherwise 1 .. max_points - existing points."""
    room = config.max_points - len(prompt.points)
    if prompt.absent or room <= 0:
        return 0
    if prompt.has_text and rng.random() < config.text_only_probability:
        return 0
    return int(rng.integers(1, room + 1))


def next_point(prediction: np.ndarray, target: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
    """SAM's correction click: a point deep inside the larger error region, labelled 1 for
    missed target (false negatives) or 0 for over-segmentation (false positives); None when
    the prediction is perfect. Returns ((x, y), label)."""
    prediction = np.asarray(prediction, dtype=bool)
    target = np.asarray(target, dtype=bool)
    false_negative = target & ~prediction
    false_positive = prediction & ~target
    fn_area, fp_area = int(false_negative.sum()), int(false_positive.sum())
    if fn_area == 0 and fp_area == 0:
        return None
    positive = fn_area >= fp_area
    region = false_negative if positive else false_positive
    # Pad so the image border counts as the region's edge: a click hugging the border is as
    # unhelpful as one on the region's boundary.
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(depth >= CLICK_DEPTH_FRACTION * depth.max())
    i = int(rng.integers(len(rows)))
    return np.array([cols[i], rows[i]], dtype=np.float64), int(positive)


def prompt_weights(has_text: np.ndarray, num_points: np.ndarray,
                   text_only_weight: float | None = None) -> np.ndarray:
    """Per-prompt loss weights: text-only prompts (text, no points) together weigh as much as
    all prompts with points together, with mean weight 1 (all 1 when one group is empty).
    `text_only_weight`, when given, fixes the text-only weight instead (others 1)."""
    text_only = np.asarray(has_text, dtype=bool) & (np.asarray(num_points) == 0)
    weights = np.ones(text_only.shape, dtype=np.float64)
    if text_only_weight is not None:
        weights[text_only] = text_only_weight
        return weights
    n_text, n_points = int(text_only.sum()), int((~text_only).sum())
    if n_text == 0 or n_points == 0:
        return weights
    total = len(weights)
    weights[text_only] = total / (2.0 * n_text)
    weights[~text_only] = total / (2.0 * n_points)
    return weights
