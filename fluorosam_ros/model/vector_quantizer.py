"""Vector quantisation of the text embedding (VQ-VAE style).

The FluoroSAM paper quantises the projected sentence embedding so that many phrasings of the same
structure ("left lung", "the lung on the left") snap to one learned code, which regularises the
text path. Training uses the straight-through estimator (the decoder's gradient passes to the
unquantised vector unchanged) plus the usual codebook and commitment losses.

Codebook usage is tracked as an exponential moving average of how many inputs each code receives
per training batch. The buffer starts at 1.0 for every code, so a code is "dead" (usage below
`dead_code_threshold`) only after it has gone unused for about log(threshold) / log(usage_decay)
training batches (~690 with the defaults); `reseed_dead_codes` then moves it onto a real input.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

INITIAL_USAGE = 1.0
RESEED_NOISE = 0.01


@dataclass
class VQOutput:
    """Quantiser result; `loss` = codebook_loss + commitment_weight * commitment_loss."""

    quantized: torch.Tensor  # (N, D), value of the nearest code, gradient of the input
    indices: torch.Tensor  # (N,) int64
    loss: torch.Tensor  # scalar
    perplexity: torch.Tensor  # scalar, of this batch's assignments, in [1, min(N, num_codes)]
    codebook_loss: torch.Tensor  # scalar, moves codes towards inputs
    commitment_loss: torch.Tensor  # scalar (unweighted), moves inputs towards codes


def perplexity_of(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a usage histogram: 1 when one code takes everything, K when uniform."""
    total = counts.sum()
    if total <= 0:
        return torch.ones((), device=counts.device)
    p = counts / total
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return torch.exp(entropy)


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with a straight-through gradient and dead-code reseeding."""

    usage: torch.Tensor

    def __init__(self, num_codes: int, dim: int, commitment_weight: float = 1.0,
                 dead_code_threshold: float = 1e-3, usage_decay: float = 0.99) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be positive, got {num_codes}, {dim}")
        if not 0.0 <= usage_decay < 1.0:
            raise ValueError(f"usage_decay must be in [0, 1), got {usage_decay}")
        self.num_codes = int(num_codes)
        self.dim = int(dim)
        self.commitment_weight = float(commitment_weight)
        self.dead_code_threshold = float(dead_code_threshold)
        self.usage_decay = float(usage_decay)
        self.codebook = nn.Embedding(self.num_codes, self.dim)
        # Unit-scale codes (norm ~1): close to where a freshly initialised MLP puts its outputs,
        # so early assignments spread over many codes rather than collapsing onto one.
        nn.init.normal_(self.codebook.weight, std=1.0 / math.sqrt(self.dim))
        self.register_buffer("usage", torch.full((self.num_codes,), INITIAL_USAGE))

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        codes = self.codebook.weight
        # ||z - e||^2 without the ||z||^2 term, which is the same for every code.
        distances = (codes * codes).sum(dim=1)[None, :] - 2.0 * z @ codes.t()
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> VQOutput:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"VectorQuantizer expects (N, {self.dim}) input, got {tuple(z.shape)}")
        if z.shape[0] == 0:
            raise ValueError("VectorQuantizer got an empty batch")
        with torch.no_grad():
            indices = self._nearest(z.detach().to(self.codebook.weight.dtype))
        codes = self.codebook(indices).to(z.dtype)
        codebook_loss = F.mse_loss(codes, z.detach())
        commitment_loss = F.mse_loss(z, codes.detach())
        loss = codebook_loss + self.commitment_weight * commitment_loss
        # Straight-through: forward value is the code, backward is the identity onto z.
        quantized = z + (codes - z).detach()
        counts = torch.bincount(indices, minlength=self.num_codes).to(self.usage.dtype)
        if self.training:
            with torch.no_grad():
                self.usage.mul_(self.usage_decay).add_(counts, alpha=1.0 - self.usage_decay)
        return VQOutput(quantized=quantized, indices=indices, loss=loss,
                        perplexity=perplexity_of(counts), codebook_loss=codebook_loss,
                        commitment_loss=commitment_loss)

    def dead_codes(self) -> torch.Tensor:
        """Indices (int64) of codes whose usage EMA is below the threshold."""
        return torch.nonzero(self.usage < self.dead_code_threshold).flatten()

    @torch.no_grad()
    def reseed_dead_codes(self, z: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """Move every dead code onto a random row of `z` (plus a little noise); return how many.

        Call it between optimiser steps with a batch of unquantised inputs (e.g. the MLP output).
        """
        dead = self.dead_codes()
        if dead.numel() == 0 or z.numel() == 0:
            return 0
        z = z.detach().reshape(-1, self.dim).to(self.codebook.weight)
        rows = torch.randint(0, z.shape[0], (dead.numel(),), generator=generator,
                             device="cpu").to(z.device)
        scale = z.std() if z.numel() > 1 else z.abs().mean()
        noise = torch.randn((dead.numel(), self.dim), generator=generator, device="cpu")
        self.codebook.weight[dead] = z[rows] + RESEED_NOISE * scale * noise.to(z)
        self.usage[dead] = INITIAL_USAGE
        log.info("reseeded %d dead VQ codes of %d", dead.numel(), self.num_codes)
        return int(dead.numel())

    def usage_stats(self) -> dict[str, float]:
        """Perplexity of the usage EMA, fraction of codes above the dead threshold, dead count."""
        dead = int((self.usage < self.dead_code_threshold).sum())
        return {
            "perplexity": float(perplexity_of(self.usage)),
            "active_fraction": 1.0 - dead / self.num_codes,
            "dead": float(dead),
        }
