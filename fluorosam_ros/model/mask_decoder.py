"""Mask decoder: learned output tokens + prompt tokens through the two-way transformer.

Output tokens, in order: [IoU token, absent token, mask token 0 (single-mask), mask tokens 1..3
(multimask)]. Each mask token becomes, through its own hypernetwork MLP, a linear classifier
over the x4-upscaled image features; the IoU head scores every mask; the absent head says
whether the prompted structure is in the image at all (FluoroSAM's text prompts can name
anatomy outside the field of view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fluorosam_ros.model.common import MLP, LayerNorm2d
from fluorosam_ros.model.transformer import TwoWayTransformer

NUM_OUTPUT_TOKENS_BEFORE_MASKS = 2  # IoU token, absent token


@dataclass
class DecoderOutput:
    """masks (B, K, 4h, 4w) logits, iou_predictions (B, K), absent_logits (B,); K = 3 or 1."""

    masks: torch.Tensor
    iou_predictions: torch.Tensor
    absent_logits: torch.Tensor


@dataclass(frozen=True)
class MaskDecoderConfig:
    transformer_dim: int = 256
    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def build(self) -> "MaskDecoder":
        transformer = TwoWayTransformer(self.depth, self.transformer_dim, self.num_heads,
                                        self.mlp_dim, self.attention_downsample_rate)
        return MaskDecoder(self.transformer_dim, transformer, self.num_multimask_outputs,
                           self.iou_head_depth, self.iou_head_hidden_dim)


def _collapse_broadcast(t: torch.Tensor) -> torch.Tensor:
    """An expand()ed batch (stride 0) holds one distinct item: keep batch 1 so it stays shared."""
    return t[:1] if t.shape[0] > 1 and t.stride(0) == 0 else t


class MaskDecoder(nn.Module):
    def __init__(self, transformer_dim: int = 256, transformer: TwoWayTransformer | None = None,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        if transformer_dim % 8:
            raise ValueError(f"transformer_dim must be divisible by 8, got {transformer_dim}")
        if num_multimask_outputs < 1:
            raise ValueError(f"need at least one multimask output, got {num_multimask_outputs}")
        if transformer is None:
            transformer = TwoWayTransformer(embedding_dim=transformer_dim)
        if transformer.embedding_dim != transformer_dim:
            raise ValueError(f"transformer dim {transformer.embedding_dim} != {transformer_dim}")
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.absent_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)

        # Two stride-2 transposed convs: 1/16 of the input -> 1/4, with few channels because the
        # per-mask classifier only needs a small feature vector per pixel.
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth)
        self.absent_head = MLP(transformer_dim, iou_head_hidden_dim, 1, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> DecoderOutput:
        """image (1 or B, D, h, w), pe (1, D, h, w), sparse (B, N, D), dense (1 or B, D, h, w).

        multimask_output picks mask tokens 1..3 (ambiguous prompts) or token 0 alone.
        """
        self._check_inputs(image_embeddings, image_pe, sparse_prompt_embeddings,
                           dense_prompt_embeddings)
        selected = (slice(1, self.num_mask_tokens) if multimask_output else slice(0, 1))
        masks, iou_pred, absent = self._predict(image_embeddings, image_pe,
                                                sparse_prompt_embeddings, dense_prompt_embeddings,
                                                selected)
        return DecoderOutput(masks, iou_pred[:, selected], absent)

    def _predict(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                 sparse: torch.Tensor, dense: torch.Tensor,
                 selected: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.absent_token.weight,
                                   self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse], dim=1)

        # The usual case is one cached image and a broadcast "no mask" map: their sum stays batch 1
        # and the transformer broadcasts it over the prompts.
        src = _collapse_broadcast(image_embeddings) + _collapse_broadcast(dense)
        hs, keys = self.transformer(src, _collapse_broadcast(image_pe), tokens)

        first_mask = NUM_OUTPUT_TOKENS_BEFORE_MASKS
        mask_tokens_out = hs[:, first_mask:first_mask + self.num_mask_tokens]
        h, w = src.shape[-2:]
        features = self.output_upscaling(keys.transpose(1, 2).reshape(batch, -1, h, w))
        indices = range(self.num_mask_tokens)[selected]
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i])
                                for i in indices], dim=1)  # (B, K, D/8)
        b, c, fh, fw = features.shape
        masks = (hyper_in @ features.reshape(b, c, fh * fw)).reshape(b, -1, fh, fw)

        iou_pred = self.iou_prediction_head(hs[:, 0])
        absent = self.absent_head(hs[:, 1]).squeeze(-1)
        return masks, iou_pred, absent

    def _check_inputs(self, image: torch.Tensor, pe: torch.Tensor, sparse: torch.Tensor,
                      dense: torch.Tensor) -> None:
        d = self.transformer_dim
        if sparse.dim() != 3 or sparse.shape[-1] != d:
            raise ValueError(f"sparse_prompt_embeddings must be (B, N, {d}), "
                             f"got {tuple(sparse.shape)}")
        batch = sparse.shape[0]
        if image.dim() != 4 or image.shape[1] != d:
            raise ValueError(f"image_embeddings must be (1 or B, {d}, h, w), "
                             f"got {tuple(image.shape)}")
        grid = tuple(image.shape[2:])
        for name, t in (("image_embeddings", image), ("image_pe", pe),
                        ("dense_prompt_embeddings", dense)):
            if t.dim() != 4 or t.shape[1] != d or tuple(t.shape[2:]) != grid:
                raise ValueError(f"{name} must be (., {d}, {grid[0]}, {grid[1]}), "
                                 f"got {tuple(t.shape)}")
            if t.shape[0] not in (1, batch):
                raise ValueError(f"{name} batch {t.shape[0]} must be 1 or the prompt batch {batch}")
