"""The CTC acoustic model: shapes, lengths, padding invariance."""

from __future__ import annotations

import torch

from fluorosam_ros.language.acoustic.model import AcousticConfig, CommandAcousticModel
from fluorosam_ros.language.acoustic.transcript import ALPHABET


def test_output_is_log_probabilities_at_a_third_of_the_frame_rate():
    model = CommandAcousticModel(AcousticConfig(channels=32, hidden=16, layers=1)).eval()
    features = torch.randn(2, 90, 64)
    log_probs, steps = model(features, torch.tensor([90, 60]))
    assert log_probs.shape == (2, 30, len(ALPHABET))
    assert steps.tolist() == [30, 20]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 30), atol=1e-5)


def test_padding_does_not_change_an_utterance():
    torch.manual_seed(0)
    model = CommandAcousticModel(AcousticConfig(channels=32, hidden=16, layers=2)).eval()
    short = torch.randn(1, 45, 64)
    padded = torch.cat([short, torch.zeros(1, 45, 64)], dim=1)
    with torch.no_grad():
        alone, steps = model(short, torch.tensor([45]))
        batched, _ = model(torch.cat([padded, torch.randn(1, 90, 64)]), torch.tensor([45, 90]))
    # zero features past the end are what the convolutions pad with anyway; the GRUs are packed
    assert torch.allclose(batched[0, :int(steps[0])], alone[0], atol=1e-4)
