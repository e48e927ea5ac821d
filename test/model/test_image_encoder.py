"""EfficientNet-Lite0 backbone, its checkpoint loading, and the fused image encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

from fluorosam_ros.model.image_encoder import (
    FEATURE_CHANNELS,
    EfficientNetLite0,
    EfficientNetLiteImageEncoder,
    SwinBlock,
    SwinConfig,
    SwinImageEncoder,
    _block_index_map,
    _tf_same_pad,
    _translate_key,
    default_weights_path,
    load_efficientnet_lite0_weights,
)


@pytest.fixture(scope="module")
def checkpoint() -> Dict[str, torch.Tensor]:
    return torch.load(default_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pretrained_full() -> EfficientNetLite0:
    model = EfficientNetLite0(include_head=True)
    load_efficientnet_lite0_weights(model)
    return model.eval()


def _image(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


def _save(state: Dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def test_tf_same_pad_puts_extra_pixel_at_end() -> None:
    x = torch.ones(1, 1, 8, 8)
    padded = _tf_same_pad(x, kernel_size=3, stride=2)
    assert padded.shape[-2:] == (9, 9)  # total pad 1: none before, one after
    assert padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0


def test_backbone_feature_strides_and_channels() -> None:
    feats = EfficientNetLite0().eval().forward_features(_image(64))
    assert sorted(feats) == [4, 8, 16, 32]              # stride 4 for the grounding refiner
    channels = {**FEATURE_CHANNELS, 4: 24}
    for stride, f in feats.items():
        assert f.shape == (1, channels[stride], 64 // stride, 64 // stride)
    assert FEATURE_CHANNELS == {8: 40, 16: 112, 32: 320}
    embedding, skips = EfficientNetLiteImageEncoder(embed_dim=32, pretrained=False).eval().forward_with_skips(_image(64))
    assert embedding.shape == (1, 32, 4, 4)
    assert {s: tuple(f.shape) for s, f in skips.items()} == {4: (1, 24, 16, 16), 8: (1, 40, 8, 8)}


@pytest.mark.parametrize("size", [256, 448])
def test_encoder_output_shape(size: int) -> None:
    enc = EfficientNetLiteImageEncoder(embed_dim=32, pretrained=False).eval()
    with torch.no_grad():
        out = enc(_image(size, batch=2))
    assert out.shape == (2, 32, size // 16, size // 16)
    assert torch.isfinite(out).all()


def test_checkpoint_loads_completely(checkpoint, pretrained_full) -> None:
    state = pretrained_full.state_dict()
    blocks = _block_index_map()
    used = set()
    for key, tensor in checkpoint.items():
        ours = _translate_key(key, blocks)
        assert ours in state, key
        assert state[ours].shape == tensor.shape, key
        assert torch.equal(state[ours], tensor), key
        used.add(ours)
    assert used == set(state)  # a bijection: nothing unused on either side
    assert len(checkpoint) == 296


def test_headless_backbone_skips_only_head(checkpoint) -> None:
    model = EfficientNetLite0(include_head=False)
    load_efficientnet_lite0_weights(model)
    assert torch.equal(model.stem.conv.weight, checkpoint["_conv_stem.weight"])
    last = checkpoint["_blocks.15._project_conv.weight"]
    assert torch.equal(model.stages[6][0].project.conv.weight, last)
    assert not hasattr(model, "classifier")


def test_pretrained_weights_change_encoder_output() -> None:
    x = _image(64)
    torch.manual_seed(0)
    random_enc = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=False).eval()
    torch.manual_seed(0)
    pretrained_enc = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=True).eval()
    # Same seed: the neck is identical, so any difference comes from the loaded backbone.
    assert torch.equal(random_enc.neck.conv.weight, pretrained_enc.neck.conv.weight)
    with torch.no_grad():
        assert not torch.allclose(random_enc(x), pretrained_enc(x), atol=1e-3)


def test_classifier_logits_finite_and_deterministic(pretrained_full) -> None:
    # A smooth synthetic image (gradients + a disc), ImageNet-normalised range.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 224), torch.linspace(-1, 1, 224), indexing="ij")
    img = torch.stack([xx, yy, ((xx ** 2 + yy ** 2) < 0.3).float() * 2 - 1])[None]
    with torch.no_grad():
        a, b = pretrained_full(img), pretrained_full(img)
    assert a.shape == (1, 1000)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    # A trained classifier is confident somewhere; uniform-ish logits would mean broken loading.
    assert a.softmax(-1).max() > 5.0 / 1000


def test_headless_backbone_has_no_classifier_forward() -> None:
    with pytest.raises(RuntimeError, match="without its head"):
        EfficientNetLite0(include_head=False)(_image(32))


def test_truncated_file_raises_clear_error(tmp_path: Path) -> None:
    data = default_weights_path().read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(RuntimeError, match="corrupt"):
        load_efficientnet_lite0_weights(EfficientNetLite0(), bad)


def test_garbage_file_raises_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(RuntimeError, match="corrupt"):
        load_efficientnet_lite0_weights(EfficientNetLite0(), bad)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_efficientnet_lite0_weights(EfficientNetLite0(), tmp_path / "nope.pth")


def test_wrong_shape_raises_and_copies_nothing(checkpoint, tmp_path: Path) -> None:
    state = dict(checkpoint)
    state["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)  # really 5x5
    model = EfficientNetLite0()
    before = model.stem.conv.weight.clone()
    with pytest.raises(RuntimeError, match="shape mismatch.*_blocks.3._depthwise_conv"):
        load_efficientnet_lite0_weights(model, _save(state, tmp_path / "shape.pth"))
    assert torch.equal(model.stem.conv.weight, before)


def test_missing_tensor_raises(checkpoint, tmp_path: Path) -> None:
    state = {k: v for k, v in checkpoint.items() if k != "_blocks.7._bn1.running_var"}
    with pytest.raises(RuntimeError, match="stages.3.2.depthwise.bn.running_var not in checkpoint"):
        load_efficientnet_lite0_weights(EfficientNetLite0(), _save(state, tmp_path / "missing.pth"))


def test_unexpected_tensor_raises(checkpoint, tmp_path: Path) -> None:
    state = dict(checkpoint)
    state["_blocks.3._se_reduce.weight"] = torch.zeros(6, 144, 1, 1)  # a non-Lite (SE) checkpoint
    with pytest.raises(RuntimeError, match="unexpected checkpoint tensor _blocks.3._se_reduce"):
        load_efficientnet_lite0_weights(EfficientNetLite0(), _save(state, tmp_path / "extra.pth"))


def test_gradient_reaches_neck_and_backbone() -> None:
    enc = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=False).train()
    enc(_image(64, batch=2)).square().mean().backward()
    for name, p in enc.neck.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert enc.backbone.stem.conv.weight.grad.abs().sum() > 0


def test_eval_deterministic_and_batch_independent() -> None:
    enc = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=False).eval()
    x = _image(64, batch=2)
    with torch.no_grad():
        a, b = enc(x), enc(x)
        single = enc(x[1:])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:], single, atol=1e-5, rtol=1e-4)


def test_frozen_batchnorm_keeps_statistics_in_training() -> None:
    enc = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=False).train()
    bn = enc.backbone.stem.bn
    before = bn.running_mean.clone()
    enc(_image(64, batch=2) * 5 + 3)
    assert not bn.training and enc.neck.training
    assert torch.equal(bn.running_mean, before)

    live = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=False, freeze_bn=False).train()
    live(_image(64, batch=2) * 5 + 3)
    assert not torch.equal(live.backbone.stem.bn.running_mean, before)


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 64, 64), (1, 3, 72, 72)])
def test_rejects_bad_input(shape) -> None:
    enc = EfficientNetLiteImageEncoder(embed_dim=16, pretrained=False)
    with pytest.raises(ValueError):
        enc(torch.zeros(shape))


# ---- Swin ------------------------------------------------------------------------------------

TINY_SWIN = SwinConfig(embed_dim=12, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=7)


@pytest.mark.parametrize("size", [256, 448])
def test_swin_output_shape(size: int) -> None:
    enc = SwinImageEncoder(embed_dim=16, cfg=TINY_SWIN).eval()
    with torch.no_grad():
        out = enc(_image(size))
    assert out.shape == (1, 16, size // 16, size // 16)
    assert torch.isfinite(out).all()


def test_swin_large_default_size() -> None:
    with torch.device("meta"):  # shapes only: building 195M real parameters takes seconds
        backbone = SwinImageEncoder().backbone
    backbone_params = sum(p.numel() for p in backbone.parameters())
    assert 190e6 < backbone_params < 200e6  # Swin-L is ~197M with its 1.5M classifier


@pytest.mark.parametrize("shift", [False, True])
def test_swin_block_attends_only_within_its_window(shift: bool) -> None:
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=7, shift=shift, mlp_ratio=2.0).eval()
    x = torch.randn(1, 14, 14, 8)
    x2 = x.clone()
    x2[0, 0, 0] = torch.randn(8) * 5  # not a constant shift, which the LayerNorm would remove
    with torch.no_grad():
        changed = (block(x2) - block(x)).abs().sum(-1)[0] > 1e-6
    # Unshifted: the whole top-left window. Shifted: the cyclic roll brings the opposite border
    # into the same window; the mask must confine (0, 0) to its own 3x3 corner region.
    reach = 7 if not shift else 7 // 2  # the shift is half a window
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[:reach, :reach] = True
    assert torch.equal(changed, expected)


def test_swin_weights_round_trip_and_bad_file(tmp_path: Path) -> None:
    enc = SwinImageEncoder(embed_dim=16, cfg=TINY_SWIN).eval()
    path = _save(enc.state_dict(), tmp_path / "swin.pth")
    loaded = SwinImageEncoder(embed_dim=16, cfg=TINY_SWIN, weights_path=path).eval()
    x = _image(64)
    with torch.no_grad():
        assert torch.equal(enc(x), loaded(x))
    with pytest.raises(RuntimeError):  # another architecture's weights
        SwinImageEncoder(embed_dim=32, cfg=TINY_SWIN, weights_path=path)
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="corrupt"):
        SwinImageEncoder(embed_dim=16, cfg=TINY_SWIN, weights_path=tmp_path / "bad.pth")


def test_swin_gradient_reaches_patch_embedding() -> None:
    enc = SwinImageEncoder(embed_dim=16, cfg=TINY_SWIN)
    enc(_image(64)).square().mean().backward()
    assert enc.backbone.patch_embed.weight.grad.abs().sum() > 0
    assert enc.backbone.stages[2][1].attn.bias_table.grad.abs().sum() > 0
