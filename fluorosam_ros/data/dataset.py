"""A streaming torch dataset over FluoroSeg shards (for training; any number of ranks and workers).

Each (rank, DataLoader worker) pair reads its own subset of the shard files, so a multi-machine
run streams the data with no coordination: shard i goes to reader i % (world_size x workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .augment import SimToRealAugmenter
from .shards import iterate_samples, shard_paths
from ..twin.detector import DetectorModel


class FluoroSegDataset(IterableDataset):
    """Yields {"image": (1, H, W) float32 in [0, 1], "exposed": (H, W) bool, "masks": (N, H, W) bool,
    "meta": dict}. `augmenter` applies the sim-to-real augmentations to the display image."""

    def __init__(self, root: str | Path, split: str = "train", rank: int = 0, world_size: int = 1,
                 augmenter: SimToRealAugmenter | None = None, seed: int = 0) -> None:
        self.paths = shard_paths(Path(root), split)
        if not self.paths:
            raise FileNotFoundError(f"no {split} shards under {root}")
        self.rank, self.world_size = rank, world_size
        self.augmenter = augmenter
        self.seed = seed
        self.detector = DetectorModel()

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        reader, readers = self.rank * workers + worker, self.world_size * workers
        rng = np.random.default_rng([self.seed, reader])
        for sample in iterate_samples(self.paths, rank=reader, world_size=readers):
            display = self.detector.display(self.detector.intensity(sample.image, sample.exposed), sample.exposed)
            if self.augmenter is not None:
                display = self.augmenter(display, rng, valid=sample.exposed)
            yield {"key": sample.key, "image": torch.from_numpy(np.ascontiguousarray(display, dtype=np.float32))[None],
                   "exposed": torch.from_numpy(sample.exposed), "masks": torch.from_numpy(sample.masks),
                   "meta": sample.meta}
