from __future__ import annotations

import math

import pytest
import torch

from fluorosam_ros.model.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer


def _small_transformer(dim: int = 32) -> TwoWayTransformer:
    torch.manual_seed(0)
    return TwoWayTransformer(depth=2, embedding_dim=dim, num_heads=4, mlp_dim=64).eval()


def test_attention_matches_explicit_softmax_formula():
    torch.manual_seed(0)
    attn = Attention(embedding_dim=16, num_heads=2, downsample_rate=2)
    q, k = torch.randn(3, 4, 16), torch.randn(3, 7, 16)
    v = torch.randn(3, 7, 16)
    out = attn(q, k, v)

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(3, -1, 2, 4).transpose(1, 2)  # internal dim 8 = 2 heads x 4

    qh, kh, vh = heads(attn.q_proj(q)), heads(attn.k_proj(k)), heads(attn.v_proj(v))
    weights = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attn.out_proj((weights @ vh).transpose(1, 2).reshape(3, 4, 8))
    assert attn.internal_dim == 8
    torch.testing.assert_close(out, expected)


def test_attention_broadcasts_batch_one_keys():
    torch.manual_seed(0)
    attn = Attention(16, 2)
    q, k = torch.randn(5, 3, 16), torch.randn(1, 9, 16)
    torch.testing.assert_close(attn(q, k, k), attn(q, k.expand(5, -1, -1), k.expand(5, -1, -1)))


@pytest.mark.parametrize("dim, heads, rate", [(16, 3, 1), (16, 2, 3), (16, 4, 8)])
def test_attention_rejects_indivisible_dims(dim, heads, rate):
    with pytest.raises(ValueError):
        Attention(dim, heads, rate)


@pytest.mark.parametrize("dim, heads, mlp", [(32, 4, 64), (256, 8, 2048)])
@pytest.mark.parametrize("batch", [1, 5])
def test_output_shapes_with_cached_image(dim, heads, mlp, batch):
    torch.manual_seed(0)
    transformer = TwoWayTransformer(2, dim, heads, mlp).eval()
    image, pe = torch.randn(1, dim, 16, 16), torch.randn(1, dim, 16, 16)
    with torch.no_grad():
        queries, keys = transformer(image, pe, torch.randn(batch, 7, dim))
    assert queries.shape == (batch, 7, dim)
    assert keys.shape == (batch, 256, dim)


def test_cached_image_gives_the_same_result_as_a_repeated_one():
    transformer = _small_transformer()
    image, pe = torch.randn(1, 32, 16, 16), torch.randn(1, 32, 16, 16)
    tokens = torch.randn(4, 5, 32)
    with torch.no_grad():
        cached = transformer(image, pe, tokens)
        repeated = transformer(image.repeat(4, 1, 1, 1), pe.repeat(4, 1, 1, 1), tokens)
    torch.testing.assert_close(cached[0], repeated[0])
    torch.testing.assert_close(cached[1], repeated[1])


def test_prompts_in_a_batch_do_not_interact():
    transformer = _small_transformer()
    image, pe, tokens = torch.randn(1, 32, 8, 8), torch.randn(1, 32, 8, 8), torch.randn(3, 5, 32)
    with torch.no_grad():
        together, _ = transformer(image, pe, tokens)
        alone, _ = transformer(image, pe, tokens[1:2])
    torch.testing.assert_close(together[1:2], alone)


def test_permuting_prompt_tokens_permutes_queries_and_keeps_keys():
    transformer = _small_transformer()
    image, pe, tokens = torch.randn(2, 32, 8, 8), torch.randn(1, 32, 8, 8), torch.randn(2, 6, 32)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        queries, keys = transformer(image, pe, tokens)
        queries_p, keys_p = transformer(image, pe, tokens[:, perm])
    torch.testing.assert_close(queries_p, queries[:, perm])
    torch.testing.assert_close(keys_p, keys)


def test_image_positional_encoding_matters():
    transformer = _small_transformer()
    image, tokens = torch.randn(1, 32, 8, 8), torch.randn(1, 4, 32)
    with torch.no_grad():
        a, _ = transformer(image, torch.randn(1, 32, 8, 8), tokens)
        b, _ = transformer(image, torch.randn(1, 32, 8, 8), tokens)
    assert (a - b).abs().max() > 1e-3


def test_first_block_skips_query_positional_encoding_in_self_attention():
    torch.manual_seed(0)
    first = TwoWayAttentionBlock(16, 2, 32, skip_first_layer_pe=True)
    later = TwoWayAttentionBlock(16, 2, 32)
    later.load_state_dict(first.state_dict())
    queries, keys = torch.randn(1, 3, 16), torch.randn(1, 10, 16)
    key_pe, zero_pe = torch.randn(1, 10, 16), torch.zeros(1, 3, 16)
    # With zero query PE the only difference is the missing residual in the first block.
    out_first, _ = first(queries, keys, zero_pe, key_pe)
    out_later, _ = later(queries, keys, zero_pe, key_pe)
    assert (out_first - out_later).abs().max() > 1e-3
    assert first.skip_first_layer_pe and not later.skip_first_layer_pe


@pytest.mark.parametrize("image, pe, tokens", [
    ((1, 32, 8, 8), (1, 32, 8, 8), (2, 3, 16)),
    ((3, 32, 8, 8), (1, 32, 8, 8), (2, 3, 32)),
    ((1, 32, 8, 8), (1, 32, 4, 4), (2, 3, 32)),
    ((1, 16, 8, 8), (1, 32, 8, 8), (2, 3, 32)),
    ((32, 8, 8), (1, 32, 8, 8), (2, 3, 32)),
])
def test_bad_shapes_raise(image, pe, tokens):
    transformer = _small_transformer()
    with pytest.raises(ValueError):
        transformer(torch.zeros(image), torch.zeros(pe), torch.zeros(tokens))
