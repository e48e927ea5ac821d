"""Log-mel features: shapes, per-utterance normalisation, padding left out of a batch's statistics."""

from __future__ import annotations

import numpy as np
import torch

from fluorosam_ros.language.acoustic.features import FeatureConfig, frames_of, log_mel, mel_filterbank


def test_filterbank_covers_the_band_with_triangles():
    bank = mel_filterbank(FeatureConfig())
    assert bank.shape == (64, FeatureConfig().fft // 2 + 1)
    assert float(bank.max()) <= 1.0 + 1e-6 and float(bank.min()) >= 0.0
    assert bool((bank.sum(dim=1) > 0).all())                     # no empty band


def test_features_are_normalised_per_utterance_and_gain_free():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 1000, 16000) * np.sin(np.linspace(0, 30, 16000))
    features = log_mel(audio)
    assert features.shape == (1, int(frames_of(torch.tensor(16000))), 64)
    assert torch.allclose(features.mean(dim=1), torch.zeros(64), atol=1e-4)
    louder = log_mel(audio * 8)
    assert torch.allclose(features, louder, atol=1e-2)            # gain does not matter


def test_padded_batch_matches_each_utterance_alone():
    rng = np.random.default_rng(1)
    short, long = rng.normal(0, 500, 8000), rng.normal(0, 500, 16000) * np.linspace(0, 1, 16000)
    batch = torch.zeros(2, 16000)
    batch[0, :8000] = torch.from_numpy(short)
    batch[1] = torch.from_numpy(long)
    together = log_mel(batch, samples=torch.tensor([8000, 16000]))
    frames = int(frames_of(torch.tensor(8000)))
    alone = log_mel(short)
    # windows past either end see zeros (constant padding), alone or in a batch
    assert torch.allclose(together[0, :frames], alone[0], atol=1e-3)
    assert float(together[0, frames:].abs().max()) == 0.0          # padding zeroed
    assert torch.allclose(together[1], log_mel(long)[0], atol=1e-3)
