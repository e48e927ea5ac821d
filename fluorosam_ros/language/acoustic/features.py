"""Log-mel features of 16 kHz PCM: 25 ms windows every 10 ms, normalised per utterance.

Per-utterance normalisation (mean and deviation of each mel band over the utterance) removes
the microphone's gain and colouring, as cepstral mean normalisation does for pocketsphinx."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

CLEAN_DITHER_LSB = 2.0      # what "clean" audio carries, in training and decoding: no microphone
                            # delivers exact digital silence


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate_hz: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    mels: int = 64
    low_hz: float = 60.0
    high_hz: float = 7600.0

    @property
    def window(self) -> int:
        return int(round(self.sample_rate_hz * self.window_ms / 1000))

    @property
    def hop(self) -> int:
        return int(round(self.sample_rate_hz * self.hop_ms / 1000))

    @property
    def fft(self) -> int:
        return 1 << (self.window - 1).bit_length()


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """(mels, fft // 2 + 1) triangular filters, equally spaced on the mel scale."""
    bins = config.fft // 2 + 1
    freqs = np.linspace(0.0, config.sample_rate_hz / 2, bins)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(config.low_hz), _hz_to_mel(config.high_hz), config.mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None)).float()


def log_mel(audio: torch.Tensor | np.ndarray, config: FeatureConfig = FeatureConfig(),
            samples: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, frames, mels) normalised log-mel features of (batch, samples) or (samples,) PCM
    (int16 scale or float; the normalisation makes the scale irrelevant). For a padded batch,
    `samples` gives each item's true length: its statistics then leave the padding out."""
    x = torch.as_tensor(np.asarray(audio) if isinstance(audio, np.ndarray) else audio).float()
    if x.dim() == 1:
        x = x[None]
    spectrum = torch.stft(x, config.fft, config.hop, config.window, torch.hann_window(config.window),
                          center=True, pad_mode="constant", return_complex=True).abs() ** 2
    energies = torch.log(mel_filterbank(config) @ spectrum + 1e-6).transpose(1, 2)
    if samples is None:
        samples = torch.full((x.shape[0],), x.shape[1])
    valid = (torch.arange(energies.shape[1])[None] < frames_of(samples, config)[:, None]).unsqueeze(-1).float()
    count = valid.sum(dim=1, keepdim=True).clamp(min=2)
    mean = (energies * valid).sum(dim=1, keepdim=True) / count
    std = (((energies - mean) ** 2 * valid).sum(dim=1, keepdim=True) / (count - 1)).sqrt()
    return (energies - mean) / (std + 1e-3) * valid


def frames_of(samples: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Feature frames of each item's sample count (as `frames`, for a tensor)."""
    return 1 + torch.div(samples, config.hop, rounding_mode="floor")
