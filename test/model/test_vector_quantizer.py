"""Vector quantiser: nearest code, straight-through gradient, codebook update, usage, reseeding."""

from __future__ import annotations

import pytest
import torch

from fluorosam_ros.model.vector_quantizer import VectorQuantizer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_quantized_value_is_the_nearest_code():
    vq = VectorQuantizer(num_codes=16, dim=8)
    z = torch.randn(32, 8)
    out = vq(z)
    brute = torch.cdist(z, vq.codebook.weight).argmin(dim=1)
    assert torch.equal(out.indices, brute)
    assert torch.allclose(out.quantized, vq.codebook.weight[brute], atol=1e-6)
    assert out.quantized.shape == (32, 8) and out.indices.dtype == torch.int64


def test_straight_through_gradient_reaches_input_unchanged():
    vq = VectorQuantizer(num_codes=16, dim=8)
    z = torch.randn(5, 8, requires_grad=True)
    weights = torch.randn(5, 8)
    (vq(z).quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)
    # The task loss alone does not move the codebook: only the VQ loss does.
    assert vq.codebook.weight.grad is None or torch.all(vq.codebook.weight.grad == 0)


def test_codebook_moves_towards_inputs_after_a_step():
    vq = VectorQuantizer(num_codes=4, dim=3)
    z = torch.randn(20, 3) + 5.0
    optimiser = torch.optim.SGD(vq.parameters(), lr=0.5)
    before = vq(z)
    used = before.indices.unique()
    distance_before = (vq.codebook.weight[before.indices] - z).norm(dim=1).mean().item()
    optimiser.zero_grad()
    before.loss.backward()
    optimiser.step()
    distance_after = (vq.codebook.weight.detach()[before.indices] - z).norm(dim=1).mean().item()
    assert distance_after < distance_before
    assert vq.codebook.weight.grad[used].abs().sum() > 0


def test_commitment_weight_scales_commitment_term():
    z = torch.randn(10, 8)
    losses = {}
    for weight in (0.0, 1.0, 3.0):
        torch.manual_seed(1)
        out = VectorQuantizer(num_codes=16, dim=8, commitment_weight=weight)(z)
        assert out.loss.item() == pytest.approx(
            out.codebook_loss.item() + weight * out.commitment_loss.item(), rel=1e-6)
        losses[weight] = out.loss.item()
    commitment = losses[1.0] - losses[0.0]
    assert commitment > 0
    assert losses[3.0] - losses[0.0] == pytest.approx(3.0 * commitment, rel=1e-5)


def test_commitment_gradient_pulls_input_towards_code():
    vq = VectorQuantizer(num_codes=4, dim=3, commitment_weight=1.0)
    z = torch.randn(6, 3, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    step = -z.grad
    towards_code = (vq.codebook.weight[out.indices] - z).detach()
    assert torch.all((step * towards_code).sum(dim=1) > 0)


def test_usage_ema_counts_only_in_training():
    vq = VectorQuantizer(num_codes=4, dim=2, usage_decay=0.5)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [-10, -10]]))
    z = torch.tensor([[0.1, 0.0], [0.0, 0.1], [9.9, 0.0]])  # code 0 twice, code 1 once
    vq.train()
    vq(z)
    assert torch.allclose(vq.usage, torch.tensor([0.5 + 1.0, 0.5 + 0.5, 0.5, 0.5]))
    vq.eval()
    vq(z)
    assert torch.allclose(vq.usage, torch.tensor([1.5, 1.0, 0.5, 0.5]))


def test_dead_code_is_detected_and_reseeded_near_an_input():
    vq = VectorQuantizer(num_codes=3, dim=2, usage_decay=0.5, dead_code_threshold=1e-3)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))
    z = torch.tensor([[0.0, 0.1], [1.0, 0.9], [0.1, 0.0], [0.9, 1.0]])
    vq.train()
    assert vq.dead_codes().numel() == 0  # a fresh codebook is not dead
    for _ in range(20):
        vq(z)
    assert vq.dead_codes().tolist() == [2]
    assert vq.usage_stats()["active_fraction"] == pytest.approx(2 / 3)
    fresh = torch.tensor([[5.0, -5.0], [5.0, -5.0]])
    assert vq.reseed_dead_codes(fresh, generator=torch.Generator().manual_seed(0)) == 1
    assert (vq.codebook.weight[2] - fresh[0]).norm() < 0.5
    assert vq.dead_codes().numel() == 0
    assert vq(torch.tensor([[5.0, -5.0]])).indices.item() == 2
    assert vq.reseed_dead_codes(fresh) == 0


def test_perplexity_bounds():
    vq = VectorQuantizer(num_codes=8, dim=4)
    same = vq(torch.ones(10, 4)).perplexity.item()
    assert same == pytest.approx(1.0)
    with torch.no_grad():
        spread = vq(vq.codebook.weight.clone()).perplexity.item()
    assert spread == pytest.approx(8.0, rel=1e-4)
    for _ in range(5):
        p = vq(torch.randn(16, 4)).perplexity.item()
        assert 1.0 <= p <= 8.0
    stats = vq.usage_stats()
    assert 1.0 <= stats["perplexity"] <= 8.0 and 0.0 <= stats["active_fraction"] <= 1.0


def test_bad_input_shape_raises():
    vq = VectorQuantizer(num_codes=8, dim=4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        vq(torch.randn(3, 5))
    with pytest.raises(ValueError, match="empty"):
        vq(torch.randn(0, 4))
