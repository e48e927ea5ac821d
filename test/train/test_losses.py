from __future__ import annotations

import pytest
import torch

from fluorosam_ros.model.mask_decoder import DecoderOutput
from fluorosam_ros.train.losses import (LossConfig, dice_loss, fluorosam_loss, focal_loss,
                                        mask_iou)


def _square(b: int = 1, size: int = 8) -> torch.Tensor:
    target = torch.zeros(b, size, size, dtype=torch.bool)
    target[:, 2:6, 2:6] = True
    return target


def _logits_for(target: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """(B, 1, H, W) logits that are confidently right."""
    return (target.float() * 2 - 1).unsqueeze(1) * scale


def _output(masks: torch.Tensor, iou=None, absent=None) -> DecoderOutput:
    b, k = masks.shape[:2]
    iou = torch.zeros(b, k) if iou is None else iou
    absent = torch.zeros(b) if absent is None else absent
    return DecoderOutput(masks, iou, absent)


def _call(output, target, absent, weight=None, config=None):
    b = target.shape[0]
    weight = torch.ones(b) if weight is None else weight
    return fluorosam_loss(output, target, absent, torch.tensor(0.0), weight, config or LossConfig())


def test_dice_perfect_is_zero_and_inverted_is_one():
    target = _square()
    perfect = dice_loss(_logits_for(target), target)
    inverted = dice_loss(-_logits_for(target), target)
    assert perfect.shape == (1, 1)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)
    # nearly one: only the smoothing keeps it below (1 - 1 / (64 + 1))
    assert inverted.item() == pytest.approx(1 - 1 / 65, abs=1e-4)


def test_dice_exact_on_half_probabilities():
    target = _square()                                 # 16 of 64 pixels
    logits = torch.zeros(1, 1, 8, 8)                   # p = 0.5 everywhere
    expected = 1 - (2 * 8 + 1) / (32 + 16 + 1)
    assert dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_focal_smaller_when_confident_and_right():
    target = _square()
    right = focal_loss(_logits_for(target, 4.0), target)
    unsure = focal_loss(torch.zeros(1, 1, 8, 8), target)
    wrong = focal_loss(-_logits_for(target, 4.0), target)
    assert right.item() < unsure.item() < wrong.item()
    assert right.item() < 1e-5


def test_focal_exact_single_pixel():
    logits = torch.tensor([[[[0.0]]]])
    target = torch.ones(1, 1, 1, dtype=torch.bool)
    # p = 0.5, bce = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
    expected = 0.25 * 0.25 * torch.log(torch.tensor(2.0)).item()
    assert focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_mask_iou_values_and_empty_case():
    target = _square()
    half = torch.full((1, 1, 8, 8), -1.0)
    half[..., 2:6, 2:4] = 1.0                         # 8 of the 16 target pixels
    empty_logits = torch.full((1, 1, 8, 8), -1.0)
    logits = torch.cat([_logits_for(target), half, empty_logits], dim=1)
    iou = mask_iou(logits, target)
    torch.testing.assert_close(iou, torch.tensor([[1.0, 0.5, 0.0]]))
    empty = torch.zeros(1, 8, 8, dtype=torch.bool)
    assert mask_iou(empty_logits, empty).item() == 1.0
    assert not mask_iou(logits.requires_grad_(), target).requires_grad


def test_best_of_three_gets_all_gradient():
    target = _square()
    good = _logits_for(target, 3.0)
    logits = torch.cat([torch.zeros_like(good), good, -good], dim=1).requires_grad_()
    out = _call(_output(logits), target, torch.zeros(1, dtype=torch.bool))
    out.mask.backward()
    assert out.best_index.tolist() == [1]
    assert logits.grad[:, 1].abs().sum() > 0
    assert logits.grad[:, 0].abs().sum() == 0 and logits.grad[:, 2].abs().sum() == 0


def test_absent_prompts_get_no_mask_loss_and_bce_pushes_absent_up():
    target = torch.zeros(2, 8, 8, dtype=torch.bool)
    target[0] = _square()[0]
    logits = torch.randn(2, 3, 8, 8).requires_grad_()
    absent_logits = torch.zeros(2, requires_grad=True)
    absent = torch.tensor([False, True])
    out = _call(_output(logits, absent=absent_logits), target, absent)
    out.total.backward()
    assert logits.grad[1].abs().sum() == 0          # absent prompt: no mask gradient
    assert logits.grad[0].abs().sum() > 0
    # gradient descent raises the absent prompt's logit and lowers the present one's
    assert absent_logits.grad[1] < 0 < absent_logits.grad[0]
    assert out.absent.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-6)


def test_all_absent_batch_has_finite_zero_mask_loss():
    target = torch.zeros(2, 8, 8, dtype=torch.bool)
    out = _call(_output(torch.randn(2, 3, 8, 8)), target, torch.ones(2, dtype=torch.bool))
    assert out.mask.item() == 0.0 and out.iou.item() == 0.0
    assert torch.isfinite(out.total)


def test_iou_mse_uses_detached_targets():
    target = _square()
    logits = torch.cat([_logits_for(target), -_logits_for(target)], dim=1).requires_grad_()
    iou_pred = torch.tensor([[0.5, 0.5]], requires_grad=True)
    out = _call(_output(logits, iou=iou_pred), target, torch.zeros(1, dtype=torch.bool))
    # targets are IoU 1 and 0: mean squared error 0.25
    assert out.iou.item() == pytest.approx(0.25, abs=1e-6)
    out.iou.backward()
    assert logits.grad is None or logits.grad.abs().sum() == 0
    torch.testing.assert_close(iou_pred.grad, torch.tensor([[-0.5, 0.5]]))


def test_prompt_weight_normalises_over_present_prompts():
    target = _square(2)
    good = _logits_for(target)
    logits = torch.stack([good[0], -good[1]])           # prompt 0 right, prompt 1 wrong
    absent = torch.zeros(2, dtype=torch.bool)
    config = LossConfig(focal_weight=0.0, dice_weight=1.0)
    heavy_wrong = _call(_output(logits), target, absent, torch.tensor([1.0, 3.0]), config)
    light_wrong = _call(_output(logits), target, absent, torch.tensor([3.0, 1.0]), config)
    wrong_dice = 1 - 1 / 65
    assert heavy_wrong.mask.item() == pytest.approx(0.75 * wrong_dice, abs=1e-4)
    assert light_wrong.mask.item() == pytest.approx(0.25 * wrong_dice, abs=1e-4)


def test_total_combines_terms_and_as_dict():
    target = _square()
    logits = torch.randn(1, 3, 8, 8)
    config = LossConfig(iou_weight=2.0, absent_weight=3.0, vq_weight=4.0)
    out = fluorosam_loss(_output(logits), target, torch.zeros(1, dtype=torch.bool),
                         torch.tensor(0.5), torch.ones(1), config)
    expected = out.mask + 2.0 * out.iou + 3.0 * out.absent + 4.0 * 0.5
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    logged = out.as_dict()
    assert set(logged) >= {"total", "mask", "iou", "absent", "vq", "best_iou"}
    assert all(isinstance(v, float) for v in logged.values())


def test_logits_are_upsampled_to_target_size():
    target = torch.zeros(1, 16, 16, dtype=torch.bool)
    target[:, 4:12, 4:12] = True
    low = _logits_for(target[:, ::2, ::2], 20.0).repeat(1, 3, 1, 1).requires_grad_()
    out = _call(_output(low), target, torch.zeros(1, dtype=torch.bool))
    assert out.mask_iou.shape == (1, 3)
    assert out.mask_iou.min().item() > 0.7
    out.total.backward()
    assert low.grad.shape == low.shape
