"""The acoustic model: log-mel frames -> per-frame character log-probabilities (CTC).

A strided 1-D convolution cuts the frame rate to a third (30 ms per output: still room for
the blank CTC needs between doubled letters at 200 words per minute, and half the cost of
20 ms on two CPU cores), a second convolution widens the context, then bidirectional GRUs
read the whole utterance (commands are short and are decoded when the speaker stops, so a
causal model would buy nothing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .features import FeatureConfig
from .transcript import ALPHABET


@dataclass(frozen=True)
class AcousticConfig:
    mels: int = FeatureConfig.mels
    channels: int = 160
    hidden: int = 128
    layers: int = 3
    dropout: float = 0.15
    classes: int = len(ALPHABET)
    stride: int = 3          # 30 ms per output: ~33 steps/s against ~20 letters/s of fast speech


class CommandAcousticModel(nn.Module):
    def __init__(self, config: AcousticConfig = AcousticConfig()) -> None:
        super().__init__()
        self.config = config
        self.front = nn.Sequential(
            nn.Conv1d(config.mels, config.channels, 5, stride=config.stride, padding=2), nn.GELU(),
            nn.Conv1d(config.channels, config.channels, 5, padding=2), nn.GELU())
        self.rnn = nn.GRU(config.channels, config.hidden, num_layers=config.layers, batch_first=True,
                          bidirectional=True, dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.hidden, config.classes)

    def output_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        """Output steps for input frame counts (the strided convolution's arithmetic)."""
        return (frames + 2 * 2 - 5) // self.config.stride + 1

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities (batch, steps, classes), steps per item) of (batch, frames, mels)."""
        conv, act, context, act2 = self.front
        x = act(conv(features.transpose(1, 2)))
        lengths = self.output_lengths(frames).clamp(min=1, max=x.shape[2])
        # zero the steps past each item's end, as the context convolution pads a lone utterance
        x = x * (torch.arange(x.shape[2], device=x.device)[None] < lengths[:, None].to(x.device)).unsqueeze(1)
        x = act2(context(x)).transpose(1, 2)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        x, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.head(self.drop(x)).log_softmax(-1), lengths

    def describe(self) -> dict:
        return {"config": asdict(self.config), "parameters": sum(p.numel() for p in self.parameters())}
