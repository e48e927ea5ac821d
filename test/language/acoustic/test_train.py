"""The trainer end to end on a tiny corpus, and what a speech-model file must be."""

from __future__ import annotations

import pytest
import torch

from fluorosam_ros.language.acoustic.model import AcousticConfig
from fluorosam_ros.language.acoustic.train import TrainSpeechConfig, main, train
from fluorosam_ros.language.acoustic.weights import AcousticCheckpointError, load_checkpoint
from fluorosam_ros.language.audio import espeak_available


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (scripts/setup.sh)")
@pytest.mark.parametrize("out", ["asr.pt", "run"])
def test_a_few_steps_write_loadable_weights(tmp_path, out):
    """`out` a file, or a folder (that exists: the weights go inside it)."""
    config = TrainSpeechConfig(utterances=12, validation=4, steps=4, batch=4, validate_every=2, workers=1,
                               model=AcousticConfig(channels=32, hidden=16, layers=1))
    if out == "run":
        (tmp_path / out).mkdir()
    result = train(config, tmp_path / "data", tmp_path / out, progress=False)
    weights = tmp_path / out if out.endswith(".pt") else tmp_path / out / "command_asr.pt"
    assert result["out"] == str(weights)
    assert [row["step"] for row in result["history"]] == [2, 4]
    assert all(row["loss"] > 0 and 0 <= row["cer"] for row in result["history"])
    checkpoint = load_checkpoint(weights)
    assert checkpoint["model"]["hidden"] == 16 and checkpoint["training"]["held_out_accents"] == ["en-us", "en-gb"]
    assert all(v.dtype == torch.float16 for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert (tmp_path / "data" / "train_12_seed0_variants-files_spelled85.npz").is_file()   # the spoken corpus is cached


def test_bad_speech_model_files_are_refused_clearly(tmp_path):
    with pytest.raises(AcousticCheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(AcousticCheckpointError, match="cannot be read"):
        load_checkpoint(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "state_dict": {}}, other)
    with pytest.raises(AcousticCheckpointError, match="is not a"):
        load_checkpoint(other)


@pytest.mark.parametrize("share", ["spelled_share", "flite_share", "off_topic_share"])
def test_a_corpus_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match=f"{share} is a share"):
        TrainSpeechConfig(**{share: 1.2})
    with pytest.raises(ValueError, match=f"{share} is a share"):
        TrainSpeechConfig(**{share: float("nan")})


def test_the_command_line_refuses_a_bad_share_before_speaking_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--spelled-share", "85", "--data", str(tmp_path / "corpus"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "spelled_share is a share of the corpus, in [0, 1]; got 85.0" in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()
