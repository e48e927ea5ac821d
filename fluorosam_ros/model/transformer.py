"""Two-way transformer: prompt tokens and image tokens attend to each other.

Tokens (a few per prompt) query the image, and the image queries the tokens back, so both the
token outputs (for the heads) and the image features (for the masks) become prompt-aware.
Positional encodings are re-added at every attention instead of once at the input so that
geometry is never washed out by the residual stream.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention whose q/k/v live in an optionally smaller internal dimension.

    Downsampling the internal dim keeps the token<->image attentions (with h * w keys) cheap.
    Inputs with batch 1 broadcast against the others after projection, so a cached image
    embedding shared by B prompts is projected once, not B times.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        if downsample_rate < 1 or embedding_dim % downsample_rate:
            raise ValueError(f"downsample_rate {downsample_rate} must divide {embedding_dim}")
        self.internal_dim = embedding_dim // downsample_rate
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide internal dim {self.internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, D), k and v (B, Nk, D) -> (B, Nq, D)."""
        batch = max(q.shape[0], k.shape[0], v.shape[0])
        q, k, v = (self._split_heads(proj(x).expand(batch, -1, -1))
                   for proj, x in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v)))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d_head)) v
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))


class FeedForward(nn.Module):
    """Token-wise two-layer MLP of the transformer block."""

    def __init__(self, embedding_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, tokens->image, token MLP, image->tokens; each residual + LayerNorm."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048,
                 attention_downsample_rate: int = 2, skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = FeedForward(embedding_dim, mlp_dim)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads,
                                                   attention_downsample_rate)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            # In the first layer the queries ARE the prompt embeddings (positions included), so
            # adding them again would double-count; replace instead of residual-add.
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """A stack of two-way blocks and a final token->image attention."""

    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8,
                 mlp_dim: int = 2048, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.embedding_dim = embedding_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                point_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B or 1, D, h, w), pe (B or 1, D, h, w), tokens (B, N, D)
        -> queries (B, N, D), keys (B, h * w, D).

        Batch-1 image inputs broadcast over the B prompts (a cached embedding is not copied).
        """
        self._check_shapes(image_embedding, image_pe, point_embedding)
        # Kept at batch 1 if cached: the first block's attentions broadcast it, and its residual
        # update is the first per-prompt copy of the image tokens.
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys

    def _check_shapes(self, image: torch.Tensor, pe: torch.Tensor, tokens: torch.Tensor) -> None:
        d = self.embedding_dim
        if tokens.dim() != 3 or tokens.shape[-1] != d:
            raise ValueError(f"point_embedding must be (B, N, {d}), got {tuple(tokens.shape)}")
        for name, t in (("image_embedding", image), ("image_pe", pe)):
            if t.dim() != 4 or t.shape[1] != d or t.shape[0] not in (1, tokens.shape[0]):
                raise ValueError(f"{name} must be (1 or {tokens.shape[0]}, {d}, h, w), "
                                 f"got {tuple(t.shape)}")
        if image.shape[2:] != pe.shape[2:]:
            raise ValueError(f"image_pe grid {tuple(pe.shape[2:])} != "
                             f"image grid {tuple(image.shape[2:])}")
