"""Text path: frozen sentence encoder -> MLP -> VQ -> one (N, 1, D) token."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fluorosam_ros.model.text_encoder import (MiniLMSentenceEncoder, SentenceEncoder,
                                              TextPromptEncoder, build_sentence_encoder)


class FakeEncoder(nn.Module):
    """A sentence encoder with a parameter, to prove it stays frozen and out of parameters()."""

    def __init__(self, dim: int = 384) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(dim))
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        with torch.no_grad():
            rows = [self.table * (len(t) + 1) for t in texts]
        return F.normalize(torch.stack(rows), dim=-1)


@pytest.fixture
def encoder() -> TextPromptEncoder:
    torch.manual_seed(0)
    return TextPromptEncoder(None, num_codes=32)


def test_tokens_from_embeddings_without_minilm(encoder):
    out = encoder(embeddings=torch.randn(4, 384))
    assert out.tokens.shape == (4, 1, 256)
    assert out.indices.shape == (4,) and out.vq_loss.ndim == 0
    # The token is a codebook vector in value.
    assert torch.allclose(out.tokens[:, 0], encoder.vq.codebook.weight[out.indices])


def test_mlp_has_two_hidden_layers(encoder):
    linears = [m for m in encoder.mlp if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(384, 512), (512, 512), (512, 256)]


def test_gradient_reaches_mlp_through_vq(encoder):
    out = encoder(embeddings=torch.randn(3, 384))
    (out.tokens.sum() + out.vq_loss).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.mlp.parameters())
    assert encoder.vq.codebook.weight.grad.abs().sum() > 0


def test_sentence_encoder_is_frozen_and_not_registered():
    fake = FakeEncoder()
    text_encoder = TextPromptEncoder(fake, num_codes=8)
    param_ids = {id(p) for p in text_encoder.parameters()}
    assert id(fake.table) not in param_ids
    assert not any(k.startswith("sentence_encoder") for k in text_encoder.state_dict())
    assert not fake.table.requires_grad
    out = text_encoder(texts=["left lung", "right femur"])
    assert out.tokens.shape == (2, 1, 256)
    assert fake.calls == [["left lung", "right femur"]]


def test_fake_encoder_satisfies_protocol():
    assert isinstance(FakeEncoder(), SentenceEncoder)
    assert isinstance(MiniLMSentenceEncoder(), SentenceEncoder)  # lazy: does not load the model


class CountingModel:
    """Stands in for the SentenceTransformer: records which texts it was asked to embed."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def encode(self, texts, **_kwargs) -> torch.Tensor:
        self.asked.append(list(texts))
        return torch.stack([torch.full((384,), float(len(t))) for t in texts])


def test_minilm_cache_embeds_each_text_once():
    minilm = MiniLMSentenceEncoder(max_cache=2)
    minilm._model = CountingModel()
    out = minilm.encode(["ab", "abc", "ab"])
    assert minilm._model.asked == [["ab", "abc"]]  # duplicates in a batch embedded once
    assert out.shape == (3, 384) and torch.allclose(out.norm(dim=1), torch.ones(3))
    assert torch.equal(out[0], out[2])
    minilm.encode(["abc", "x"])
    assert minilm._model.asked[-1] == ["x"]  # "abc" came from the cache
    minilm.encode(["ab"])  # evicted (max_cache=2, oldest first)
    assert minilm._model.asked[-1] == ["ab"]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one"),
    ({"texts": ["a"], "embeddings": torch.zeros(1, 384)}, "exactly one"),
    ({"texts": []}, "empty list"),
    ({"texts": ["left lung", "  "]}, r"texts\[1\] is an empty prompt"),
    ({"texts": "left lung"}, "list of strings"),
    ({"texts": ["ok", 3]}, "not a string"),
    ({"embeddings": torch.zeros(2, 512)}, r"\(N, 384\)"),
    ({"embeddings": torch.zeros(384)}, r"\(N, 384\)"),
    ({"embeddings": torch.zeros(0, 384)}, "empty"),
])
def test_bad_inputs_raise_clear_errors(kwargs, message):
    text_encoder = TextPromptEncoder(FakeEncoder(), num_codes=8)
    with pytest.raises(ValueError, match=message):
        text_encoder(**kwargs)


def test_texts_without_sentence_encoder_raise(encoder):
    with pytest.raises(ValueError, match="no sentence encoder"):
        encoder(texts=["left lung"])


def test_build_sentence_encoder_names():
    assert isinstance(build_sentence_encoder("minilm"), MiniLMSentenceEncoder)
    with pytest.raises(ValueError, match="unknown sentence encoder"):
        build_sentence_encoder("bert")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None,
                    reason="open_clip is installed here")
def test_open_clip_without_package_says_what_to_install():
    with pytest.raises(ImportError, match="open_clip_torch") as error:
        build_sentence_encoder("open_clip")
    assert "ViT-B/32" in str(error.value)


@pytest.mark.slow
def test_minilm_similarity_and_cache():
    minilm = MiniLMSentenceEncoder()
    texts = ["left lung", "the lung on the left", "right femur"]
    start = time.perf_counter()
    first = minilm.encode(texts)
    first_s = time.perf_counter() - start
    assert first.shape == (3, 384)
    assert torch.allclose(first.norm(dim=1), torch.ones(3), atol=1e-5)
    similarity = first @ first.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    start = time.perf_counter()
    second = minilm.encode(list(reversed(texts)))
    second_s = time.perf_counter() - start
    assert torch.equal(second, first.flip(0))
    assert second_s < 0.01 and second_s < first_s / 10
    # The embeddings feed a trainable MLP: they must be usable under autograd.
    text_encoder = TextPromptEncoder(minilm, num_codes=8)
    out = text_encoder(texts=["left lung"])
    out.tokens.sum().backward()
    assert text_encoder.mlp[0].weight.grad is not None
