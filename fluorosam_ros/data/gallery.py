"""A contact sheet of generated samples with mask outlines and one prompt each, for people."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..twin.detector import DetectorModel
from ..visualization import contact_sheet, overlay
from .shards import iterate_samples, shard_paths


def write_gallery(dataset_dir: Path, out_path: Path, count: int = 16, masks_per_image: int = 3,
                  columns: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    detector = DetectorModel()
    pictures = []
    for sample in iterate_samples(shard_paths(dataset_dir)):
        if len(pictures) >= count:
            break
        records = sample.meta["masks"]
        if not records:
            continue
        chosen = rng.choice(len(records), size=min(masks_per_image, len(records)), replace=False)
        intensity = detector.intensity(sample.image, sample.exposed)
        display = detector.display(intensity, sample.exposed)
        labels = []
        for index in chosen:
            record = records[index]
            prompt = record["prompts"][0]["text"] if record["prompts"] else record["canonical"]
            labels.append(f"{record['name']}: \"{prompt}\"")
        caption = f"{sample.meta['view_family']} ({sample.meta['split']})"
        pictures.append(overlay(display, None, [sample.masks[i] for i in chosen], labels, caption))
    if not pictures:
        raise FileNotFoundError(f"no samples found under {dataset_dir}")
    contact_sheet(pictures, columns=columns, path=out_path)
    return out_path
