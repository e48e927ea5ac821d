from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from fluorosam_ros.data.augment import SimToRealAugmenter
from fluorosam_ros.data.dataset import FluoroSegDataset
from fluorosam_ros.data.shards import Sample, ShardWriter


def write_shards(root, rng, shards=4, per_shard=3):
    for index in range(shards):
        writer = ShardWriter(root / "train" / f"shard-{index:06d}.tar")
        for offset in range(per_shard):
            image = rng.random((12, 12)).astype(np.float32) * 4
            meta = {"masks": [{"name": "heart"}], "split": "train"}
            writer.write(Sample(f"{index}_{offset}", meta, image, np.ones((12, 12), bool), rng.random((1, 12, 12)) > 0.5))
        writer.close()


def test_yields_tensors_and_splits_shards_across_ranks_and_workers(tmp_path, rng):
    write_shards(tmp_path, rng)
    item = next(iter(FluoroSegDataset(tmp_path)))
    assert item["image"].shape == (1, 12, 12) and item["image"].dtype == torch.float32
    assert item["masks"].dtype == torch.bool and item["masks"].shape == (1, 12, 12)
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    keys = []
    for rank in range(2):
        loader = DataLoader(FluoroSegDataset(tmp_path, rank=rank, world_size=2), batch_size=None, num_workers=2)
        keys += [item["key"] for item in loader]
    expected = sorted(f"{i}_{j}" for i in range(4) for j in range(3))
    assert sorted(keys) == expected  # every sample exactly once across 2 ranks x 2 workers


def test_augmenter_is_applied(tmp_path, rng):
    write_shards(tmp_path, rng, shards=1, per_shard=1)
    plain = next(iter(FluoroSegDataset(tmp_path)))["image"]
    inverted = SimToRealAugmenter.from_dict({"inversion": {"p": 1.0}, **{s: {"p": 0.0} for s in (
        "coarse_dropout", "gaussian_contrast", "gaussian_blur", "noise", "random_window", "clahe")}})
    augmented = next(iter(FluoroSegDataset(tmp_path, augmenter=inverted)))["image"]
    torch.testing.assert_close(augmented, 1 - plain)
