"""Image embeddings computed once, for training the prompt path and mask decoder.

With a frozen image encoder every step would encode the same images again, and on a CPU that
encoding is most of a step's time. The cache encodes each training image `copies` times, each
with its own draw of the sim-to-real augmentations (they only change intensities, so one set
of masks serves every copy), and a step then picks one copy per image. Embeddings are kept in
float16 and masks bit-packed: a 1,500-image, 256-px set with 4 copies needs ~1.6 GB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)


def embed_items(model, items: list[dict], device: torch.device) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """(embeddings (B, C, h, w), input sizes) of dataset items' display images; grad follows the caller."""
    images, sizes = _preprocessed(model, items)
    return model.embed_image(images.to(device)), sizes


def embed_items_with_skips(model, items: list[dict], device: torch.device
                           ) -> tuple[torch.Tensor, dict[int, torch.Tensor], list[tuple[int, int]]]:
    """As `embed_items`, plus the backbone's finer maps that the grounding refiner reads."""
    images, sizes = _preprocessed(model, items)
    embeddings, skips = model.image_encoder.forward_with_skips(images.to(device))
    return embeddings, skips, sizes


def _preprocessed(model, items: list[dict]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    tensors, sizes = zip(*(model.preprocessor(item["image"][0].numpy(), item["exposed"].numpy()) for item in items))
    return torch.cat(tensors), list(sizes)


@dataclass
class CachedImage:
    """One training image without its pixels: what prompt sampling and the losses need."""

    key: str
    meta: dict
    exposed: np.ndarray              # (H, W) bool
    packed_masks: np.ndarray         # np.packbits of the (N, H, W) masks along the last axis
    mask_shape: tuple[int, int, int]
    input_size: tuple[int, int]      # the resized image's size before padding
    embeddings: list[torch.Tensor]   # one (C, h, w) float16 tensor per augmented copy
    # the same copies' backbone maps for the grounding refiner ({stride: (C, H, W) float16}); may be empty
    skips: list[dict[int, torch.Tensor]] = field(default_factory=list)

    def masks(self) -> np.ndarray:
        width = self.mask_shape[-1]
        return np.unpackbits(self.packed_masks, axis=-1, count=width).astype(bool).reshape(self.mask_shape)

    def item(self, copy: int) -> dict:
        """A trainer item (as the dataset yields, plus "embedding" and "input_size", minus pixels)."""
        height, width = self.exposed.shape
        skips = {"skips": {stride: map_[None].float() for stride, map_ in self.skips[copy].items()}} if self.skips else {}
        return {**skips, "key": self.key, "meta": self.meta, "exposed": torch.from_numpy(self.exposed),
                "masks": torch.from_numpy(self.masks()), "input_size": self.input_size,
                # zero-stride stand-in: only the image's shape is read downstream
                "image": torch.zeros(1, 1, 1).expand(1, height, width),
                "embedding": self.embeddings[copy].float()[None]}


class EmbeddingCache:
    """The training set's image embeddings, `copies` augmented encodings per image."""

    def __init__(self, images: Iterable[CachedImage] = (), with_skips: bool = False) -> None:
        self.images = list(images)
        self.with_skips = with_skips  # also keep the backbone maps the grounding refiner reads

    def __len__(self) -> int:
        return len(self.images)

    @property
    def copies(self) -> int:
        return min(len(image.embeddings) for image in self.images)

    @torch.no_grad()
    def add_pass(self, model, items: Iterable[dict], device: torch.device, batch_size: int = 8,
                 progress: bool = True, description: str = "encoding") -> int:
        """Encode one pass over `items` (dataset items), adding a copy to each image; returns the count."""
        from tqdm import tqdm

        by_key = {image.key: image for image in self.images}
        count = 0
        batch: list[dict] = []
        for item in tqdm(items, desc=description, unit="image", disable=not progress, leave=False):
            batch.append(item)
            if len(batch) == batch_size:
                count += self._encode(model, batch, device, by_key)
                batch = []
        if batch:
            count += self._encode(model, batch, device, by_key)
        return count

    def _encode(self, model, batch: list[dict], device, by_key: dict[str, CachedImage]) -> int:
        if self.with_skips:
            embeddings, skips, sizes = embed_items_with_skips(model, batch, device)
            per_image = [{stride: maps[index].to("cpu", torch.float16).clone() for stride, maps in skips.items()}
                         for index in range(len(batch))]
        else:
            embeddings, sizes = embed_items(model, batch, device)
            per_image = [None] * len(batch)
        embeddings = embeddings.to("cpu", torch.float16)
        for item, size, embedding, image_skips in zip(batch, sizes, embeddings, per_image):
            key = item["key"]
            if key not in by_key:
                masks = item["masks"].numpy()
                by_key[key] = CachedImage(key, item["meta"], item["exposed"].numpy().copy(),
                                          np.packbits(masks, axis=-1), tuple(masks.shape),
                                          tuple(int(v) for v in size), [])
                self.images.append(by_key[key])
            by_key[key].embeddings.append(embedding.clone())
            if image_skips is not None:
                by_key[key].skips.append(image_skips)
        return len(batch)

    @classmethod
    def build(cls, model, passes: Iterable[Iterable[dict]], device: torch.device, batch_size: int = 8,
              progress: bool = True, with_skips: bool = False) -> "EmbeddingCache":
        """Encode every pass (each an iterable of dataset items, e.g. one augmented epoch);
        `with_skips` keeps the grounding refiner's backbone maps too (~2.3x the memory)."""
        cache = cls(with_skips=with_skips)
        was_training = model.training
        model.eval()
        try:
            for index, items in enumerate(passes):
                count = cache.add_pass(model, items, device, batch_size, progress, f"encoding copy {index + 1}")
                log.info("embedding cache: copy %d of %d images", index + 1, count)
        finally:
            model.train(was_training)
        if not cache.images:
            raise ValueError("the embedding cache is empty: no training images")
        return cache

    def stream(self, rng: np.random.Generator) -> Iterator[dict]:
        """Items forever: each epoch visits every image once in a new order, with a random copy."""
        if not self.images:
            raise ValueError("the embedding cache is empty: no training images")
        while True:
            for index in rng.permutation(len(self.images)):
                image = self.images[int(index)]
                yield image.item(int(rng.integers(len(image.embeddings))))
