"""FluoroSAM training losses: SAM's focal + dice mask loss on the best of the K outputs, an MSE
IoU-head loss, a BCE loss on the "absent" head and the vector quantizer's commitment loss.

Every prompt in a batch carries a weight (see `prompts.prompt_weights`): the paper balances
text-only prompts against point-augmented ones so that the many correction-click rounds do not
drown out the text-only case the model is mainly for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from fluorosam_ros.model.mask_decoder import DecoderOutput

DICE_SMOOTH = 1.0
# Below this total prompt weight there is nothing to normalise by (e.g. a batch of only
# absent prompts); the weighted sums are then zero as well.
_MIN_WEIGHT = 1e-12


def _as_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) target as float, broadcastable against (B, K, H, W) logits."""
    if target.dim() != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"target must be (B, H, W) with B={logits.shape[0]}, "
                         f"got {tuple(target.shape)}")
    if tuple(target.shape[-2:]) != tuple(logits.shape[-2:]):
        raise ValueError(f"target size {tuple(target.shape[-2:])} != logits size "
                         f"{tuple(logits.shape[-2:])}; use match_resolution first")
    return target.to(logits.dtype).unsqueeze(1)


def match_resolution(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (B, K, h, w) logits to `size` (no-op when they already match)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft dice loss per output, (B, K): 1 - (2|P.T| + 1) / (|P| + |T| + 1), P = sigmoid."""
    t = _as_target(logits, target)
    p = logits.sigmoid()
    intersection = (p * t).flatten(2).sum(-1)
    total = p.flatten(2).sum(-1) + t.flatten(2).sum(-1)
    return 1.0 - (2.0 * intersection + DICE_SMOOTH) / (total + DICE_SMOOTH)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.) averaged over pixels, (B, K); alpha < 0 disables the
    class balance term."""
    t = _as_target(logits, target).expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = logits.sigmoid()
    p_t = p * t + (1 - p) * (1 - t)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return loss.flatten(2).mean(-1)


@torch.no_grad()
def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with the target per output, (B, K); two empty masks have IoU 1."""
    t = _as_target(logits, target) > 0.5
    pred = logits > 0
    intersection = (pred & t).flatten(2).sum(-1).to(logits.dtype)
    union = (pred | t).flatten(2).sum(-1).to(logits.dtype)
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


@dataclass
class LossConfig:
    """Term weights; focal:dice = 20:1 as in SAM. `text_only_weight`, when set, is the fixed
    weight of text-only prompts that the trainer passes to `prompts.prompt_weights` instead of
    the paper's balanced weighting."""

    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    absent_weight: float = 1.0
    vq_weight: float = 1.0
    grounding_weight: float = 1.0   # the dense text grounding map (BCE + dice), text prompts only
    text_only_weight: float | None = None


@dataclass
class LossOutput:
    total: torch.Tensor
    mask: torch.Tensor
    iou: torch.Tensor
    absent: torch.Tensor
    vq: torch.Tensor
    best_index: torch.Tensor   # (B,) the output that got the mask loss
    mask_iou: torch.Tensor     # (B, K) IoU of every output with its target, no grad
    grounding: torch.Tensor | None = None  # the text grounding term, where the model has one

    def as_dict(self) -> dict[str, float]:
        """Scalars for logging; `best_iou` is the mean IoU of the chosen outputs."""
        best = self.mask_iou.gather(1, self.best_index[:, None]).squeeze(1)
        return {"total": float(self.total.detach()), "mask": float(self.mask.detach()),
                "iou": float(self.iou.detach()), "absent": float(self.absent.detach()),
                "vq": float(self.vq.detach()),
                **({"grounding": float(self.grounding.detach())} if self.grounding is not None else {}),
                "best_iou": float(best.mean()) if best.numel() else float("nan")}


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = weights.sum()
    return (values * weights).sum() / total.clamp_min(_MIN_WEIGHT)


def fluorosam_loss(output: DecoderOutput, target: torch.Tensor, absent: torch.Tensor,
                   vq_loss: torch.Tensor, prompt_weight: torch.Tensor,
                   config: LossConfig) -> LossOutput:
    """The training loss for a batch of B prompts with K mask outputs each.

    target (B, H, W) bool (any size: logits are resized to it), absent (B,) bool, vq_loss a
    scalar, prompt_weight (B,). Only the best output per prompt (lowest mask loss) is trained,
    so the multimask outputs can specialise on different readings of an ambiguous prompt.
    Absent prompts are trained only through the absent head.
    """
    logits = match_resolution(output.masks, tuple(target.shape[-2:]))
    target = target.to(logits.device)
    absent = absent.to(logits.device).bool()
    per_output = (config.focal_weight * focal_loss(logits, target)
                  + config.dice_weight * dice_loss(logits, target))            # (B, K)
    best = per_output.detach().argmin(dim=1)                                     # (B,)
    best_loss = per_output.gather(1, best[:, None]).squeeze(1)
    ious = mask_iou(logits, target)

    weights = prompt_weight.to(logits.device, logits.dtype) * (~absent).to(logits.dtype)
    mask_term = _weighted_mean(best_loss, weights)
    iou_per_prompt = F.mse_loss(output.iou_predictions, ious.detach(), reduction="none").mean(1)
    iou_term = _weighted_mean(iou_per_prompt, weights)
    absent_term = F.binary_cross_entropy_with_logits(output.absent_logits,
                                                     absent.to(output.absent_logits.dtype))
    vq = torch.as_tensor(vq_loss, dtype=logits.dtype, device=logits.device)
    total = (mask_term + config.iou_weight * iou_term + config.absent_weight * absent_term
             + config.vq_weight * vq)
    return LossOutput(total, mask_term, iou_term, absent_term, vq, best, ious)


def grounding_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft dice of the (B, h, w) text grounding logits against (B, H, W) targets (scalar).

    The coarse map is upsampled to the target's size; an absent prompt's empty target teaches
    the map to stay empty. Unlike the mask loss this is plain BCE, not focal: the map is meant
    to be a calibrated "where is it", which the decoder then sharpens."""
    upsampled = match_resolution(logits[:, None], tuple(target.shape[-2:]))
    target = target.to(upsampled.device)
    bce = F.binary_cross_entropy_with_logits(upsampled, _as_target(upsampled, target))
    return bce + dice_loss(upsampled, target).mean()
