"""Ground truth per image: structure, group and tool masks with their coverage, stored compactly.

A structure's mask is "its path length > 0" in the same render as the image. A mask is kept
when it covers 0.1 %-90 % of the image (smaller is noise, larger says nothing). A group's mask
is the union of its members' masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class CoverageRule:
    min_fraction: float = 0.001
    max_fraction: float = 0.90

    def keeps(self, mask: np.ndarray) -> bool:
        fraction = float(mask.mean())
        return self.min_fraction <= fraction <= self.max_fraction


@dataclass
class MaskSet:
    """Named boolean masks of one image, with the kind of each (structure, group, tool)."""

    names: list[str]
    kinds: list[str]
    masks: np.ndarray  # (N, H, W) bool

    def __len__(self) -> int:
        return len(self.names)

    def mask(self, name: str) -> np.ndarray:
        return self.masks[self.names.index(name)]


def structure_masks(path_length_mm: np.ndarray, names: Sequence[str], rule: CoverageRule) -> MaskSet:
    kept_names, kept = [], []
    for name, path in zip(names, path_length_mm):
        mask = path > 0
        if rule.keeps(mask):
            kept_names.append(name)
            kept.append(mask)
    shape = path_length_mm.shape[1:]
    return MaskSet(kept_names, ["structure"] * len(kept_names),
                   np.array(kept, dtype=bool).reshape(len(kept), *shape))


def group_masks(path_length_mm: np.ndarray, names: Sequence[str], groups: Mapping[str, Sequence[str]],
                rule: CoverageRule) -> MaskSet:
    """Union masks of the groups with at least one member in the image."""
    index = {name: i for i, name in enumerate(names)}
    shape = path_length_mm.shape[1:]
    kept_names, kept = [], []
    for group, members in groups.items():
        rows = [index[m] for m in members if m in index]
        if not rows:
            continue
        mask = (path_length_mm[rows] > 0).any(axis=0)
        if rule.keeps(mask):
            kept_names.append(group)
            kept.append(mask)
    return MaskSet(kept_names, ["group"] * len(kept_names), np.array(kept, dtype=bool).reshape(len(kept), *shape))


def merge(*sets: MaskSet) -> MaskSet:
    shape = next((s.masks.shape[1:] for s in sets if s.masks.ndim == 3), (0, 0))
    masks = [s.masks for s in sets if len(s)]
    return MaskSet([n for s in sets for n in s.names], [k for s in sets for k in s.kinds],
                   np.concatenate(masks) if masks else np.zeros((0, *shape), dtype=bool))


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, ceil(H*W/8)) uint8, 8x smaller than bool arrays."""
    flat = masks.reshape(masks.shape[0], -1)
    return np.packbits(flat, axis=1)


def unpack_masks(packed: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=height * width).reshape(-1, height, width).astype(bool)
