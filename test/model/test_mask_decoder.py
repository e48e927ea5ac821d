from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fluorosam_ros.model.common import MLP, LayerNorm2d
from fluorosam_ros.model.mask_decoder import DecoderOutput, MaskDecoder, MaskDecoderConfig
from fluorosam_ros.model.prompt_encoder import PromptEncoder

SMALL = MaskDecoderConfig(transformer_dim=32, num_heads=4, mlp_dim=64, iou_head_hidden_dim=32)


def _small(grid: int = 16) -> tuple[PromptEncoder, MaskDecoder]:
    torch.manual_seed(0)
    encoder = PromptEncoder(32, (grid, grid), (16 * grid, 16 * grid))
    return encoder, SMALL.build()


def _decode(encoder: PromptEncoder, decoder: MaskDecoder, image: torch.Tensor,
            text: torch.Tensor | None, points=None, multimask: bool = True) -> DecoderOutput:
    sparse, dense = encoder(points, text)
    return decoder(image, encoder.get_dense_pe(), sparse, dense, multimask)


def test_layernorm2d_normalises_channels_per_pixel():
    x = torch.randn(2, 8, 3, 5) * 4 + 2
    y = LayerNorm2d(8)(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 3, 5), atol=1e-3, rtol=0)


def test_mlp_layers_and_sigmoid():
    mlp = MLP(4, 8, 2, num_layers=3, sigmoid_output=True)
    assert [layer.out_features for layer in mlp.layers] == [8, 8, 2]
    out = mlp(torch.randn(5, 4) * 100)
    assert out.shape == (5, 2) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        MLP(4, 8, 2, num_layers=0)


@pytest.mark.parametrize("dim", [32, 256])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("multimask, k", [(True, 3), (False, 1)])
def test_output_shapes_for_prompts_against_one_cached_embedding(dim, batch, multimask, k):
    torch.manual_seed(0)
    encoder = PromptEncoder(dim, (16, 16), (256, 256))
    decoder = MaskDecoderConfig(transformer_dim=dim, num_heads=8 if dim == 256 else 4,
                                mlp_dim=2048 if dim == 256 else 64,
                                iou_head_hidden_dim=dim).build().eval()
    image = torch.randn(1, dim, 16, 16)
    points = (torch.rand(batch, 2, 2) * 255, torch.tensor([[1, 0]] * batch))
    with torch.no_grad():
        out = _decode(encoder, decoder, image, torch.randn(batch, 1, dim), points, multimask)
    assert out.masks.shape == (batch, k, 64, 64)
    assert out.iou_predictions.shape == (batch, k)
    assert out.absent_logits.shape == (batch,)


def test_cached_embedding_batch_equals_prompts_one_by_one():
    encoder, decoder = _small()
    image, text = torch.randn(1, 32, 16, 16), torch.randn(4, 1, 32)
    with torch.no_grad():
        batched = _decode(encoder, decoder, image, text)
        for i in range(4):
            single = _decode(encoder, decoder, image, text[i:i + 1])
            torch.testing.assert_close(batched.masks[i:i + 1], single.masks)
            torch.testing.assert_close(batched.iou_predictions[i:i + 1], single.iou_predictions)
            torch.testing.assert_close(batched.absent_logits[i:i + 1], single.absent_logits)


def test_cached_embedding_equals_a_repeated_contiguous_one():
    encoder, decoder = _small(grid=8)
    image, text = torch.randn(1, 32, 8, 8), torch.randn(3, 1, 32)
    sparse, dense = encoder(None, text)
    pe = encoder.get_dense_pe()
    with torch.no_grad():
        cached = decoder(image, pe, sparse, dense, True)
        repeated = decoder(image.repeat(3, 1, 1, 1), pe.repeat(3, 1, 1, 1), sparse,
                           dense.contiguous(), True)
    torch.testing.assert_close(cached.masks, repeated.masks)


def test_multimask_selects_tokens_one_to_three_and_single_selects_token_zero():
    encoder, decoder = _small(grid=8)
    captured = []
    decoder.iou_prediction_head.register_forward_hook(lambda m, i, o: captured.append(o))
    image, text = torch.randn(1, 32, 8, 8), torch.randn(2, 1, 32)
    with torch.no_grad():
        multi = _decode(encoder, decoder, image, text, multimask=True)
        single = _decode(encoder, decoder, image, text, multimask=False)
    all_iou = captured[0]
    assert all_iou.shape == (2, 4)
    torch.testing.assert_close(multi.iou_predictions, all_iou[:, 1:])
    torch.testing.assert_close(single.iou_predictions, all_iou[:, :1])
    # Single mask comes from token 0's hypernetwork, distinct from all multimask outputs.
    assert all((single.masks[:, 0] - multi.masks[:, j]).abs().max() > 1e-4 for j in range(3))


def test_gradients_reach_prompts_tokens_and_heads():
    encoder, decoder = _small(grid=8)
    text = torch.randn(2, 1, 32, requires_grad=True)
    points = (torch.rand(2, 1, 2) * 127, torch.tensor([[1], [0]]))
    sparse, dense = encoder(points, text)
    # Padding embedding only appears without text: a second call exercises it.
    sparse_pad, dense_pad = encoder(points, None)
    pe = encoder.get_dense_pe()
    image = torch.randn(1, 32, 8, 8)
    out = decoder(image, pe, sparse, dense, True)
    out_pad = decoder(image, pe, sparse_pad, dense_pad, False)
    loss = sum(o.masks.sum() + o.iou_predictions.sum() + o.absent_logits.sum()
               for o in (out, out_pad))
    loss.backward()
    grads = {
        "text tokens": text.grad,
        "point label embeddings": encoder.point_embeddings.weight.grad,
        "padding embedding": encoder.not_a_point_embed.weight.grad,
        "no-mask embedding": encoder.no_mask_embed.weight.grad,
        "mask tokens": decoder.mask_tokens.weight.grad,
        "iou token": decoder.iou_token.weight.grad,
        "absent token": decoder.absent_token.weight.grad,
        "absent head": decoder.absent_head.layers[-1].weight.grad,
        "iou head": decoder.iou_prediction_head.layers[-1].weight.grad,
        "upscaling": decoder.output_upscaling[0].weight.grad,
    }
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
    # Each mask token is used (every token attends to the others), including unselected ones.
    assert (decoder.mask_tokens.weight.grad.abs().sum(dim=1) > 0).all()


def test_absent_logit_depends_on_the_prompt():
    encoder, decoder = _small(grid=8)
    with torch.no_grad():
        out = _decode(encoder, decoder, torch.randn(1, 32, 8, 8), torch.randn(2, 1, 32))
    assert (out.absent_logits[0] - out.absent_logits[1]).abs() > 1e-5


@pytest.fixture
def single_thread():
    # Tiny ops: thread hand-offs cost more than they save, and far more on shared CI cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_decoder_overfits_a_square_for_one_text_token(single_thread):
    encoder, decoder = _small(grid=8)
    image, text = torch.randn(1, 32, 8, 8), torch.randn(1, 1, 32)
    target = torch.zeros(1, 1, 32, 32)
    target[..., 10:22, 6:18] = 1.0
    optimizer = torch.optim.Adam([*decoder.parameters(), *encoder.parameters()], lr=3e-3)
    losses = []
    for _ in range(100):
        out = _decode(encoder, decoder, image, text, multimask=False)
        loss = F.binary_cross_entropy_with_logits(out.masks, target)
        losses.append(loss.item())
        if losses[-1] < losses[0] / 5:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] / 5, f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("image, pe, sparse, dense", [
    ((1, 32, 8, 8), (1, 32, 8, 8), (2, 3, 16), (2, 32, 8, 8)),     # token dim
    ((3, 32, 8, 8), (1, 32, 8, 8), (2, 3, 32), (2, 32, 8, 8)),     # image batch neither 1 nor B
    ((1, 32, 8, 8), (1, 32, 4, 4), (2, 3, 32), (2, 32, 8, 8)),     # pe grid
    ((1, 32, 8, 8), (1, 32, 8, 8), (2, 3, 32), (3, 32, 8, 8)),     # dense batch
    ((1, 16, 8, 8), (1, 32, 8, 8), (2, 3, 32), (2, 32, 8, 8)),     # image channels
    ((32, 8, 8), (1, 32, 8, 8), (2, 3, 32), (2, 32, 8, 8)),        # image rank
    ((1, 32, 8, 8), (1, 32, 8, 8), (2, 32), (2, 32, 8, 8)),        # sparse rank
])
def test_bad_inputs_raise(image, pe, sparse, dense):
    decoder = SMALL.build()
    with pytest.raises(ValueError):
        decoder(torch.zeros(image), torch.zeros(pe), torch.zeros(sparse), torch.zeros(dense), True)


def test_bad_construction_raises():
    with pytest.raises(ValueError):
        MaskDecoder(transformer_dim=36)
    with pytest.raises(ValueError):
        MaskDecoder(transformer_dim=32, transformer=SMALL.build().transformer,
                    num_multimask_outputs=0)
    with pytest.raises(ValueError):
        MaskDecoder(transformer_dim=64, transformer=SMALL.build().transformer)
