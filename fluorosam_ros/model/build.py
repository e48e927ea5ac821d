"""Model registry, in the style of segment-anything's `sam_model_registry`.

    model = build_model("fluorosam_cpu_small", checkpoint="weights/fluorosam_cpu_small.pt")
    model = build_model("fluorosam_swin_l", checkpoint="/path/to/your/weights.pt")  # the paper's

Checkpoints are our own format: a dict with "model" (state dict, without the frozen sentence
encoder) and "config" (the registry name and settings). Problems raise CheckpointError with the
reason: a missing or truncated file, or weights of another architecture.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .fluorosam import (CONTEXT_PREFIXES, GROUNDING_ENCODER_PREFIXES, GROUNDING_PREFIXES, MASK_INPUT_PREFIXES,
                        REFINER_PREFIXES, FluoroSAM)
from .grounding_refiner import GroundingRefiner
from .image_encoder import EfficientNetLiteImageEncoder, SwinImageEncoder
from .mask_decoder import MaskDecoderConfig
from .preprocessing import Preprocessor
from .prompt_encoder import PromptEncoder
from .text_encoder import SentenceEncoder, TextPromptEncoder, build_sentence_encoder
from .text_grounding import TextGrounding

log = logging.getLogger(__name__)


BUNDLED_WEIGHTS = {"fluorosam_cpu_small": "fluorosam_cpu_small.pt"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the requested model."""


@dataclass(frozen=True)
class FluoroSAMConfig:
    name: str
    image_encoder: str             # "efficientnet_lite0" | "swin_l"
    image_size: int
    embed_dim: int = 256
    sentence_encoder: str = "minilm"
    text_input_dim: int = 384
    text_hidden_dim: int = 512
    num_codes: int = 1024
    decoder_mlp_dim: int = 2048
    text_token_scale: float = 16.0   # see TextPromptEncoder: the text token must be as loud as the others
    text_grounding: bool = False     # dense text prompt (text_grounding.py); the paper has the token only
    grounding_context: bool = False  # the grounding's 3x3 context branch (with text_grounding)
    grounding_refiner: bool = False  # the grounding map at S/4 from the backbone's finer maps (grounding_refiner.py)
    mask_input: bool = False         # SAM's mask prompt: a previous answer (or the refined map) into the decoder
    grounding_encoder: bool = False  # a second image encoder for the text grounding (FluoroSAM; built from weights)


CONFIGS = {
    # CPU-friendly: ImageNet EfficientNet-Lite0 at 256^2, MiniLM text tower.
    # The dense text grounding makes text prompts learnable from a CPU's budget of data and steps.
    # The grounding refiner and mask prompts are opt-in for a model built without weights
    # (overrides, `fluorosam train --grounding-refiner --mask-prompts`); a checkpoint that has them,
    # as the bundled one does (run 8), builds them, and so does training from one (--init-from).
    "fluorosam_cpu_small": FluoroSAMConfig("fluorosam_cpu_small", "efficientnet_lite0", 256, text_grounding=True,
                                           grounding_context=True),
    # The paper's configuration: Swin-L at 448^2, CLIP ViT-B/32 text tower (512-d),
    # MLP 512 -> 512 -> 256, VQ over 8192 codes. Weights come from the user.
    "fluorosam_swin_l": FluoroSAMConfig("fluorosam_swin_l", "swin_l", 448, sentence_encoder="open_clip",
                                        text_input_dim=512, text_hidden_dim=512, num_codes=8192),
}


def _image_encoder(config: FluoroSAMConfig, pretrained_backbone: bool) -> nn.Module:
    if config.image_encoder == "efficientnet_lite0":
        return EfficientNetLiteImageEncoder(config.embed_dim, pretrained=pretrained_backbone)
    if config.image_encoder == "swin_l":
        return SwinImageEncoder(config.embed_dim)
    raise ValueError(f"unknown image encoder {config.image_encoder!r}")


def _build(config: FluoroSAMConfig, sentence_encoder: SentenceEncoder | None, pretrained_backbone: bool) -> FluoroSAM:
    image_encoder = _image_encoder(config, pretrained_backbone)
    grid = config.image_size // 16
    text = TextPromptEncoder(sentence_encoder, embed_dim=config.embed_dim, input_dim=config.text_input_dim,
                             hidden_dim=config.text_hidden_dim, num_codes=config.num_codes,
                             token_scale=config.text_token_scale)
    prompt = PromptEncoder(config.embed_dim, (grid, grid), (config.image_size, config.image_size),
                           dense_text=config.text_grounding, mask_input=config.mask_input)
    decoder = MaskDecoderConfig(transformer_dim=config.embed_dim, mlp_dim=config.decoder_mlp_dim).build()
    grounding = (TextGrounding(config.embed_dim, config.text_input_dim, context=config.grounding_context)
                 if config.text_grounding else None)
    refiner = (GroundingRefiner(config.embed_dim, config.text_input_dim)
               if config.grounding_refiner and grounding is not None else None)
    grounding_encoder = _image_encoder(config, pretrained_backbone) if config.grounding_encoder else None
    return FluoroSAM(image_encoder, text, prompt, decoder, Preprocessor(config.image_size), grounding, refiner,
                     grounding_encoder)


def build_model(name: str, checkpoint: str | Path | None = None, sentence_encoder: SentenceEncoder | None = None,
                load_sentence_encoder: bool = True, overrides: dict | None = None,
                pretrained_backbone: bool | None = None) -> FluoroSAM:
    """A registered model, with weights from `checkpoint` when given.

    The sentence encoder (frozen, from a registry package) is created lazily unless passed in;
    `load_sentence_encoder=False` builds a model that takes text embeddings only. With a
    checkpoint, the dense text grounding is built exactly when the checkpoint has one (unless
    `overrides` says otherwise).
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(CONFIGS)}")
    overrides = dict(overrides or {})
    payload = read_checkpoint(checkpoint, expected_name=name) if checkpoint is not None else None
    if payload is not None:
        for part, present in parts_in_weights(payload["model"]).items():
            overrides.setdefault(part, present)
    config = replace(CONFIGS[name], **overrides)
    if config.image_encoder == "swin_l" and checkpoint is None:
        raise CheckpointError("fluorosam_swin_l has no bundled weights: pass checkpoint=<your weights file>")
    if sentence_encoder is None and load_sentence_encoder:
        sentence_encoder = build_sentence_encoder(config.sentence_encoder)
    if pretrained_backbone is None:
        pretrained_backbone = checkpoint is None
    model = _build(config, sentence_encoder, pretrained_backbone)
    if payload is not None:
        _load_payload(model, payload, Path(checkpoint))
    return model


def parts_in_weights(state: dict) -> dict[str, bool]:
    """Which optional parts (FluoroSAMConfig flags) a state dict holds weights for."""
    keys = [str(key) for key in state]
    return {part: any(key.startswith(prefixes) for key in keys)
            for part, prefixes in (("text_grounding", GROUNDING_PREFIXES), ("grounding_context", CONTEXT_PREFIXES),
                                   ("grounding_refiner", REFINER_PREFIXES), ("mask_input", MASK_INPUT_PREFIXES),
                                   ("grounding_encoder", GROUNDING_ENCODER_PREFIXES))}


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the state dict's names, dtypes, shapes and bytes. Stored in every checkpoint
    we write: a file can unpickle fine and still hold flipped bits in its tensor data."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if not torch.is_tensor(value):
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(model: FluoroSAM, path: str | Path, config_name: str, extra: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    state = model.state_dict()
    torch.save({"model": state, "weights_sha256": weights_digest(state), "config": asdict(CONFIGS[config_name]),
                **(extra or {})}, partial)
    partial.replace(path)


def load_checkpoint(model: FluoroSAM, path: str | Path, expected_name: str | None = None,
                    payload: dict | None = None) -> dict:
    """Load weights, refusing corrupt or mismatched files (CheckpointError); `payload`: the
    file's contents already read (and checked) by `read_checkpoint`, so it is not read twice.

    A checkpoint from before the dense text grounding (none of its parameters) loads with the
    grounding switched off: its dense embedding is zeroed, so the model answers as it did. One
    from before the grounding's context branch loads with the branch adding nothing."""
    payload = payload if payload is not None else read_checkpoint(path, expected_name)
    _load_payload(model, payload, Path(path))
    return payload


def read_checkpoint(path: str | Path, expected_name: str | None = None) -> dict:
    """The checkpoint's payload, checked (readable, digest, model name, finite weights)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, not a torch file, pickled objects, ...
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path} is not a FluoroSAM checkpoint (no 'model' entry)")
    stored_digest = payload.get("weights_sha256")   # older checkpoints have none
    if stored_digest is not None and stored_digest != weights_digest(payload["model"]):
        raise CheckpointError(f"{path} is corrupt: its weights do not match their stored SHA-256 "
                              "(damaged or altered after saving)")
    name = payload.get("config", {}).get("name")
    if expected_name is not None and name not in (None, expected_name):
        raise CheckpointError(f"{path} holds a {name!r} model, not {expected_name!r}")
    bad = [key for key, value in payload["model"].items()
           if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or inf weights (e.g. {bad[:3]})")
    return payload


def _load_payload(model: FluoroSAM, payload: dict, path: Path) -> None:
    try:
        result = model.load_state_dict(payload["model"], strict=False)
    except RuntimeError as error:  # tensor shapes of another configuration
        raise CheckpointError(f"{path} does not fit this architecture: {error}") from error
    missing = _without_fresh_parts(model, result.missing_keys, path)
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{path} does not fit this architecture: {len(missing)} missing "
                              f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected "
                              f"(e.g. {result.unexpected_keys[:3]})")


def _without_fresh_parts(model: FluoroSAM, missing: list[str], path: Path) -> list[str]:
    """`missing` less the parts that a checkpoint from before them lacks entirely and that can
    start fresh without changing the answers: the whole text grounding (switched off: its dense
    embedding zeroed) or only its context branch, the grounding refiner and the mask prompts'
    downscaling (their last layers zeroed: no effect)."""
    state = model.state_dict()
    # the whole grounding first: the context branch is part of it
    parts = ((GROUNDING_PREFIXES, lambda: model.prompt_encoder.grounding_embed, logging.WARNING,
              "the dense text grounding: it starts switched off (its dense embedding zeroed; it has an "
              "effect only once trained)"),
             (CONTEXT_PREFIXES, lambda: model.text_grounding.context[-1], logging.INFO,
              "the grounding's context branch: it starts adding nothing"),
             (REFINER_PREFIXES, lambda: model.grounding_refiner.head[-1], logging.INFO,
              "the grounding refiner: it starts adding nothing (the coarse map, upsampled)"),
             (MASK_INPUT_PREFIXES, lambda: model.prompt_encoder.mask_downscaling[-1], logging.INFO,
              "mask prompts: they start adding nothing"))
    for prefixes, silenced_layer, level, what in parts:
        keys = {key for key in state if key.startswith(prefixes)}
        if keys and keys <= set(missing):  # a part inside one already handled has left `missing`
            with torch.no_grad():
                silenced_layer().weight.zero_()
                silenced_layer().bias.zero_()
            log.log(level, "%s predates %s", path, what)
            missing = [key for key in missing if key not in keys]
    return missing


def bundled_checkpoint(name: str = "fluorosam_cpu_small") -> Path:
    """The checkpoint shipped in the repository's `weights/` (or `$FLUOROSAM_WEIGHTS_DIR`)."""
    if name not in BUNDLED_WEIGHTS:
        raise CheckpointError(f"{name!r} has no bundled weights; bundled: {sorted(BUNDLED_WEIGHTS)}")
    return bundled_file(BUNDLED_WEIGHTS[name])


def bundled_file(filename: str) -> Path:
    """A file shipped in the repository's `weights/` (or `$FLUOROSAM_WEIGHTS_DIR`, searched first)."""
    folders = [Path(os.environ["FLUOROSAM_WEIGHTS_DIR"])] if os.environ.get("FLUOROSAM_WEIGHTS_DIR") else []
    folders.append(Path(__file__).resolve().parents[2] / "weights")
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    raise CheckpointError(f"bundled weights {filename} not found in {[str(f) for f in folders]}")


def export_weights(checkpoint: str | Path, out: str | Path, half: bool = True) -> Path:
    """A training checkpoint without optimizer, scheduler and RNG state (and in float16 by
    default: the weights are cast back to float32 on load), for shipping."""
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {key: value.half() if half and value.is_floating_point() else value
             for key, value in payload["model"].items()}
    return _save_weights(state, out, payload["config"], payload.get("step"), payload.get("train_config"),
                         "float16" if half else "float32")


def _save_weights(state: dict[str, torch.Tensor], out: str | Path, config: dict, step, train_config,
                  stored_dtype: str, **extra) -> Path:
    """Shippable weights: the state with its digest and what made it, nothing to resume from."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "weights_sha256": weights_digest(state), "config": config, "step": step,
                "train_config": train_config, "stored_dtype": stored_dtype, **extra}, out)
    return out


def combine_grounding_encoder(decoder_weights: str | Path, grounding_weights: str | Path, out: str | Path) -> Path:
    """Weights with a grounding encoder (FluoroSAM's `grounding_encoder`): everything from
    `decoder_weights`, except the text grounding and its refiner, which come from
    `grounding_weights` together with that file's image encoder, kept as the grounding encoder.
    For weights whose encoder was trained for text after the decoder was (the trainer's
    tune_grounding_with_encoder): the decoder gets back the encoder it was trained with."""
    decoder = read_checkpoint(decoder_weights)
    grounding = read_checkpoint(grounding_weights)
    if decoder["config"].get("name") != grounding["config"].get("name"):
        raise CheckpointError(f"{decoder_weights} and {grounding_weights} are of different models")
    for path, payload in ((decoder_weights, decoder), (grounding_weights, grounding)):
        parts = parts_in_weights(payload["model"])
        if parts["grounding_encoder"] or not parts["text_grounding"]:
            raise CheckpointError(f"{path}: expected one image encoder and a text grounding")
    moved = tuple(prefix for prefix in GROUNDING_PREFIXES + REFINER_PREFIXES if not prefix.startswith("prompt_encoder"))
    half = decoder.get("stored_dtype") == "float16"

    def stored(value: torch.Tensor) -> torch.Tensor:
        return value.half() if half and value.is_floating_point() else value

    state = {key: value for key, value in decoder["model"].items() if not key.startswith(moved)}
    state.update({key: stored(value) for key, value in grounding["model"].items() if key.startswith(moved)})
    state.update({GROUNDING_ENCODER_PREFIXES[0] + key[len("image_encoder."):]: stored(value)
                  for key, value in grounding["model"].items() if key.startswith("image_encoder.")})
    return _save_weights(state, out, decoder["config"], decoder.get("step"), grounding.get("train_config"),
                         decoder.get("stored_dtype", "float32"),
                         combined_from={"decoder": Path(decoder_weights).name, "grounding": Path(grounding_weights).name})


MODEL_REGISTRY: dict[str, Callable[..., FluoroSAM]] = {
    name: (lambda checkpoint=None, _name=name, **kw: build_model(_name, checkpoint, **kw)) for name in CONFIGS
}
