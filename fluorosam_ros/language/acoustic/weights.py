"""The speech model's weight files: writing them (float16, with the configs and how they were
made), reading them with a clear error for a missing, damaged or foreign file, and the bundled
`weights/command_asr.pt`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from .features import FeatureConfig
from .model import AcousticConfig, CommandAcousticModel

FORMAT = "fluorosam-command-asr/1"
BUNDLED_NAME = "command_asr.pt"


def save_weights(model: CommandAcousticModel, path: Path, metadata: dict) -> Path:
    """Shippable weights: float16 state, the configs and how they were made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, "model": asdict(model.config), "features": asdict(FeatureConfig()),
                "state_dict": state, **metadata}, partial)
    partial.replace(path)
    return path


class AcousticCheckpointError(RuntimeError):
    """A speech model file that cannot be used (missing, corrupt or of another format)."""


def load_checkpoint(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AcousticCheckpointError(f"speech model not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:   # torch raises several types for a damaged file
        raise AcousticCheckpointError(f"speech model {path} cannot be read: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise AcousticCheckpointError(f"{path} is not a {FORMAT} file")
    return checkpoint


def bundled_speech_weights() -> Path:
    """The acoustic model shipped in the repository's `weights/` (or `$FLUOROSAM_WEIGHTS_DIR`)."""
    from ...model.build import bundled_file

    return bundled_file(BUNDLED_NAME)


def load_acoustic_model(path: Path | str | None = None) -> tuple[CommandAcousticModel, dict]:
    checkpoint = load_checkpoint(path or bundled_speech_weights())
    if FeatureConfig(**checkpoint["features"]) != FeatureConfig():
        raise ValueError(f"{path}: features {checkpoint['features']} differ from this version's")
    model = CommandAcousticModel(AcousticConfig(**checkpoint["model"]))
    model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
    return model.eval(), checkpoint
