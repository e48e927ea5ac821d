"""Prompt encoder: clicked points and text tokens -> sparse tokens, plus a dense map.

The dense map is a learned "no mask" embedding, plus (with `dense_text`) the text grounding
map of `text_grounding.py`: its per-cell probability times a learned vector. That vector starts
at zero, so adding the grounding to trained weights changes nothing until it has been trained.

Points are in input-image pixels (x = column, y = row) of the S x S model input; like SAM they
are shifted by +0.5 to the pixel centre and encoded with random Fourier features, so the
decoder sees points and image positions in the same positional space.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d

PADDING_LABEL = -1
NEGATIVE_LABEL = 0
POSITIVE_LABEL = 1

Points = tuple[torch.Tensor, torch.Tensor]


class PositionEmbeddingRandom(nn.Module):
    """Gaussian random Fourier features of (x, y) in [0, 1]; output dim = 2 * num_pos_feats.

    Random features (rather than sinusoids on a fixed grid) treat x and y jointly and work for
    arbitrary sub-pixel coordinates, which is what clicked points need.
    """

    def __init__(self, num_pos_feats: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        if num_pos_feats < 1:
            raise ValueError(f"num_pos_feats must be positive, got {num_pos_feats}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        # A persistent buffer: the projection is part of the trained model and must be saved.
        self.register_buffer("gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates in [0, 1] -> (..., 2 * num_pos_feats)."""
        coords = 2.0 * coords.to(self.gaussian_matrix.dtype) - 1.0
        proj = 2.0 * math.pi * (coords @ self.gaussian_matrix)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of an (h, w) grid at its cell centres -> (D, h, w)."""
        h, w = size
        device = self.gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor,
                            image_size: tuple[int, int]) -> torch.Tensor:
        """Pixel coordinates (B, N, 2) as (x, y) in an (H, W) image -> (B, N, D)."""
        height, width = image_size
        scale = coords.new_tensor([1.0 / width, 1.0 / height])
        return self._encode(coords * scale)


class PromptEncoder(nn.Module):
    """Embeds point prompts and passes text tokens through; returns (sparse, dense) embeddings."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (16, 16),
                 input_image_size: tuple[int, int] = (256, 256), dense_text: bool = False,
                 mask_input: bool = False) -> None:
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even for sin/cos features, got {embed_dim}")
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Row 0: negative point, row 1: positive point (indexed directly by the label).
        self.point_embeddings = nn.Embedding(2, embed_dim)
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        # No mask prompts in FluoroSAM: the dense input is this learned embedding (+ the text grounding).
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self.grounding_embed: nn.Conv2d | None = None
        if dense_text:
            self.grounding_embed = nn.Conv2d(1, embed_dim, 1)
            nn.init.zeros_(self.grounding_embed.weight)
            nn.init.zeros_(self.grounding_embed.bias)
        # A mask prompt at the decoder's output grid (4x the embedding's), as in SAM: the previous
        # answer when clicks refine it, or the refined text grounding map. Its last layer starts
        # at zero, so weights from before it answer as they did.
        self.mask_downscaling: nn.Sequential | None = None
        if mask_input:
            self.mask_downscaling = nn.Sequential(
                nn.Conv2d(1, 4, 2, stride=2), LayerNorm2d(4), nn.GELU(),
                nn.Conv2d(4, 16, 2, stride=2), LayerNorm2d(16), nn.GELU(), nn.Conv2d(16, embed_dim, 1))
            nn.init.zeros_(self.mask_downscaling[-1].weight)
            nn.init.zeros_(self.mask_downscaling[-1].bias)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, (1, D, h, w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def forward(self, points: Points | None = None, text_tokens: torch.Tensor | None = None,
                grounding_logits: torch.Tensor | None = None,
                mask_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> sparse (B, N(+1 pad) + T, D) and dense (B, D, h, w) embeddings.

        `grounding_logits` (B, h, w), from `TextGrounding`, needs `dense_text`; `mask_logits`
        (B, 4h, 4w), a mask prompt, needs `mask_input`; without them the dense map is the
        "no mask" embedding."""
        batch = self._check_inputs(points, text_tokens)
        parts = []
        if points is not None:
            coords, labels = points
            parts.append(self._embed_points(coords, labels, pad=text_tokens is None))
        if text_tokens is not None:
            parts.append(text_tokens.to(self.no_mask_embed.weight.dtype))
        sparse = torch.cat(parts, dim=1)
        h, w = self.image_embedding_size
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        if grounding_logits is not None:
            dense = dense + self._embed_grounding(grounding_logits, batch)
        if mask_logits is not None:
            dense = dense + self._embed_mask(mask_logits, batch)
        return sparse, dense

    def _embed_mask(self, logits: torch.Tensor, batch: int) -> torch.Tensor:
        if self.mask_downscaling is None:
            raise ValueError("this PromptEncoder was built without mask_input: it takes no mask prompt")
        h, w = self.image_embedding_size
        if tuple(logits.shape) != (batch, 4 * h, 4 * w):
            raise ValueError(f"mask logits must be ({batch}, {4 * h}, {4 * w}), got {tuple(logits.shape)}")
        # probabilities, as for the grounding: a decoder's logits and a map's differ in scale
        return self.mask_downscaling(torch.sigmoid(logits.to(self.no_mask_embed.weight.dtype))[:, None])

    def _embed_grounding(self, logits: torch.Tensor, batch: int) -> torch.Tensor:
        if self.grounding_embed is None:
            raise ValueError("this PromptEncoder was built without dense_text: it takes no grounding map")
        if tuple(logits.shape) != (batch, *self.image_embedding_size):
            raise ValueError(f"grounding logits must be ({batch}, {self.image_embedding_size[0]}, "
                             f"{self.image_embedding_size[1]}), got {tuple(logits.shape)}")
        # probabilities, not logits: bounded, whatever the grounding head's scale
        return self.grounding_embed(torch.sigmoid(logits.to(self.no_mask_embed.weight.dtype))[:, None])

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords.to(self.point_embeddings.weight.dtype) + 0.5  # to the pixel centre
        labels = labels.to(torch.long)
        if pad:
            # SAM appends a "not a point" so a lone click is never the only sparse token.
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            pad_label = labels.new_full((labels.shape[0], 1), PADDING_LABEL)
            labels = torch.cat([labels, pad_label], dim=1)
        is_pad = (labels == PADDING_LABEL).unsqueeze(-1)
        pe = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        label_embed = self.point_embeddings(labels.clamp(min=0))
        pad_embed = self.not_a_point_embed.weight.expand_as(label_embed)
        # Padding carries no position: it must not look like a click at (0.5, 0.5).
        return torch.where(is_pad, pad_embed, pe + label_embed)

    def _check_inputs(self, points: Points | None, text_tokens: torch.Tensor | None) -> int:
        """Validate prompt shapes and values; returns the prompt batch size."""
        if points is None and text_tokens is None:
            raise ValueError("PromptEncoder needs points, text tokens, or both; got neither")
        batches = []
        if points is not None:
            batches.append(self._check_points(points))
        if text_tokens is not None:
            if text_tokens.dim() != 3 or text_tokens.shape[-1] != self.embed_dim:
                raise ValueError(f"text_tokens must be (B, T, {self.embed_dim}), "
                                 f"got {tuple(text_tokens.shape)}")
            batches.append(text_tokens.shape[0])
        if len(set(batches)) != 1:
            raise ValueError(f"points and text tokens disagree on batch size: {batches}")
        return batches[0]

    @staticmethod
    def _check_points(points: Points) -> int:
        if not isinstance(points, (tuple, list)) or len(points) != 2:
            raise ValueError("points must be a (coords, labels) pair")
        coords, labels = points
        if coords.dim() != 3 or coords.shape[-1] != 2:
            raise ValueError(f"point coords must be (B, N, 2), got {tuple(coords.shape)}")
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(f"point labels must be (B, N) = {tuple(coords.shape[:2])}, "
                             f"got {tuple(labels.shape)}")
        if not torch.isfinite(coords).all():
            raise ValueError("point coords contain NaN or infinite values")
        valid = (labels == PADDING_LABEL) | (labels == NEGATIVE_LABEL) | (labels == POSITIVE_LABEL)
        if not valid.all():
            bad = torch.unique(labels[~valid]).tolist()
            raise ValueError(f"point labels must be in {{-1, 0, 1}}, got {bad}")
        return coords.shape[0]
