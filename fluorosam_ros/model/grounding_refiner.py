"""Grounding refiner: the coarse text grounding map (16x16) sharpened to the decoder's 64x64 grid.

The text grounding (`text_grounding.py`) answers "where is it" per 16x16 cell of a 256-px
image: 16 px per cell, so its text-only masks have blocky edges and lose thin structures
(a perfect 16x16 map scores only Dice 0.72 against the full-resolution truth over the
structures of our held-out views). The refiner adds the backbone's stride-8 and stride-4
feature maps, which still carry edges, in a small feature pyramid that is computed once per
image (text-agnostic, cached with the embedding), and then, per prompt, the text modulates those
pixel features (FiLM) and two 3x3 convolutions read them together with the upsampled coarse map
and a per-pixel text–feature similarity. Its output is a *correction* added to the upsampled
coarse logits, and its last layer starts at zero: a model whose refiner is untrained answers
exactly as the coarse map did.

The paper has no such part (its Swin-L decoder upsamples a 28x28 embedding learnt from 3M
images); `fluorosam_swin_l` is built without it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .image_encoder import SKIP_CHANNELS


class GroundingRefiner(nn.Module):
    """(coarse logits (B, h, w), embedding, skips, sentence embeddings) -> (B, 4h, 4w) logits."""

    def __init__(self, embed_dim: int = 256, text_dim: int = 384, pixel_dim: int = 64, head_dim: int = 32,
                 skip_channels: dict[int, int] | None = None) -> None:
        super().__init__()
        skip_channels = dict(SKIP_CHANNELS if skip_channels is None else skip_channels)  # EfficientNet-Lite0's
        if sorted(skip_channels) != [4, 8]:
            raise ValueError(f"the refiner reads stride-8 and stride-4 features, got strides {sorted(skip_channels)}")
        self.text_dim = text_dim
        self.pixel_dim = pixel_dim
        self.skip_channels = skip_channels
        self.lateral16 = nn.Conv2d(embed_dim, pixel_dim, 1)
        self.lateral8 = nn.Conv2d(skip_channels[8], pixel_dim, 1)
        self.lateral4 = nn.Conv2d(skip_channels[4], pixel_dim, 1)
        self.fuse8 = nn.Sequential(nn.Conv2d(pixel_dim, pixel_dim, 3, padding=1), nn.GELU())
        self.fuse4 = nn.Sequential(nn.Conv2d(pixel_dim, pixel_dim, 3, padding=1), nn.GELU())
        self.text_query = nn.Sequential(nn.Linear(text_dim, 2 * pixel_dim), nn.GELU(), nn.Linear(2 * pixel_dim, pixel_dim))
        self.text_film = nn.Linear(text_dim, 2 * pixel_dim)
        # inputs: the modulated pixel features, the upsampled coarse logits, the similarity
        self.head = nn.Sequential(nn.Conv2d(pixel_dim + 2, head_dim, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(head_dim, head_dim, 3, padding=2, dilation=2), nn.GELU(),
                                  nn.Conv2d(head_dim, 1, 1))
        nn.init.zeros_(self.head[-1].weight)  # starts as no correction: the coarse map as it was
        nn.init.zeros_(self.head[-1].bias)

    def pixel_features(self, image_embeddings: torch.Tensor, skips: dict[int, torch.Tensor]) -> torch.Tensor:
        """Text-agnostic (B, pixel_dim, 4h, 4w) features; compute once per image."""
        missing = [stride for stride in self.skip_channels if stride not in skips]
        if missing:
            raise ValueError(f"the refiner needs the backbone's stride-{missing} features")
        x = self.lateral16(image_embeddings)
        x = F.interpolate(x, size=skips[8].shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse8(x + self.lateral8(skips[8].to(x)))
        x = F.interpolate(x, size=skips[4].shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse4(x + self.lateral4(skips[4].to(x)))

    def forward(self, coarse_logits: torch.Tensor, pixel_features: torch.Tensor,
                sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """coarse (B, h, w), pixel features (1 or B, C, H, W), sentences (B, text_dim) -> (B, H, W).

        One cached image (batch 1) serves B prompts, as in `TextGrounding`."""
        if sentence_embeddings.ndim != 2 or sentence_embeddings.shape[1] != self.text_dim:
            raise ValueError(f"sentence embeddings must be (B, {self.text_dim}), got {tuple(sentence_embeddings.shape)}")
        batch = sentence_embeddings.shape[0]
        if coarse_logits.shape[0] != batch or pixel_features.shape[0] not in (1, batch):
            raise ValueError(f"{coarse_logits.shape[0]} coarse maps and {pixel_features.shape[0]} images "
                             f"for {batch} prompts")
        sentences = sentence_embeddings.to(pixel_features)
        size = pixel_features.shape[-2:]
        coarse = F.interpolate(coarse_logits[:, None].to(pixel_features), size=size, mode="bilinear",
                               align_corners=False)
        features = pixel_features.expand(batch, -1, -1, -1)
        query = self.text_query(sentences)
        similarity = torch.einsum("bchw,bc->bhw", features, query)[:, None] / math.sqrt(self.pixel_dim)
        scale, shift = self.text_film(sentences).chunk(2, dim=1)
        modulated = F.gelu(features * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        correction = self.head(torch.cat([modulated, coarse, similarity], dim=1))
        return (coarse + correction)[:, 0]
