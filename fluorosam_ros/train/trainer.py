"""The FluoroSAM trainer: one process on the CPU, or the same code under
`torchrun --nproc_per_node=N -m fluorosam_ros.train.trainer ...` (DistributedDataParallel; each
rank streams its own shards).

Per step: a batch of images is encoded once; for each image several text prompts are decoded
(text only), then corrected iteratively with clicks sampled from the error region (SAM's
interactive training), up to `max_points` points. Losses: focal + dice on the best of the 3
outputs, MSE for the IoU head, BCE for "absent", and the VQ term. AdamW with a linear warm-up
then step decay; AMP on CUDA. Checkpoints keep the optimizer, scheduler and RNG states.
With the image encoder frozen, `embedding_cache_copies` encodes the training images once and
trains the prompt path and decoder from the cached embeddings (`embedding_cache.py`).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..data.augment import SimToRealAugmenter
from ..data.dataset import FluoroSegDataset
from ..data.shards import Sample
from ..model.build import build_model, load_checkpoint, parts_in_weights, read_checkpoint, save_checkpoint
from ..model.fluorosam import GROUNDING_ENCODER_PREFIXES
from ..model.fluorosam import GROUNDING_PREFIXES, FluoroSAM
from ..serialization import to_jsonable
from .embedding_cache import EmbeddingCache, embed_items, embed_items_with_skips
from .losses import LossConfig, fluorosam_loss, grounding_loss
from .prompts import PromptSamplerConfig, TrainingPrompt, next_point, sample_prompt

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data_dir: str = "output/fluoroseg"
    out_dir: str = "output/train"
    model: str = "fluorosam_cpu_small"
    image_size: int | None = None        # None: the registry's size
    images_per_step: int = 4
    prompts_per_image: int = 4
    max_steps: int = 2000
    lr: float = 8e-4                     # the paper's base rate
    weight_decay: float = 0.01
    warmup_steps: int = 100
    milestones: tuple[float, float] = (0.6, 0.85)  # fractions of max_steps: x0.1 at each
    max_points: int = 8
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    stop_at_step: int | None = None      # end this run early (the schedule still spans max_steps)
    init_from: str | None = None         # start from these model weights (fresh optimizer and schedule)
    freeze_image_encoder: bool = False   # fine-tune the prompt path and decoder only
    # With the encoder frozen: encode each training image this many times (each copy augmented
    # anew) once, then train from the cached embeddings (embedding_cache.py); 0 = encode every step
    embedding_cache_copies: int = 0
    reseed_dead_codes: bool = True       # move unused VQ codes onto this step's text embeddings
    # ... during this fraction of max_steps only: later, a re-seeded code changes what a phrase
    # means to the decoder under its feet (with thousands of phrasings most codes look "dead")
    reseed_until: float = 1.0
    grounding_lr_scale: float = 3.0      # the dense text grounding learns this much faster
    # A fresh run first trains the dense text grounding alone for this many steps (needs the frozen
    # image encoder): a per-cell linear task, cheap, and the decoder then trains against a useful map
    grounding_pretrain_steps: int = 0
    # Keep the text grounding as it is (e.g. fine-tune the decoder against a grounding trained
    # alone on canonical names); its dense embedding into the decoder still trains
    freeze_grounding: bool = False
    # Then train the grounding refiner alone (the coarse map frozen) for this many steps: the map
    # at S/4 from the backbone's finer features, what text-only prompts answer with
    refiner_pretrain_steps: int = 0
    # Then fine-tune the image encoder together with the text grounding and its refiner on the
    # text-map loss alone for this many steps (images encoded, and augmented, every step): the
    # text-only answer learns X-ray features instead of reading ImageNet ones. The decoder then
    # reads a moved embedding; training it against it (a later run, encoder frozen) is optional,
    # and on our one-patient data it cost the clicks more than it gave (weights/MODEL_CARD.md, run 9).
    grounding_encoder_steps: int = 0
    grounding_encoder_lr: float = 1e-4   # the encoder's peak rate in that stage (heads: x grounding_lr_scale)
    coarse_map_weight: float = 0.5       # the 16x16 map's own loss beside the refined map's
    # Mask prompts (models that take them): in a click round, the previous answer with this
    # probability; else the refined text map, or none with the second probability
    mask_prompt_previous_probability: float = 0.7
    mask_prompt_none_probability: float = 0.15
    text_token_scale: float | None = None  # None: the registry's
    text_grounding: bool | None = None     # the dense text grounding; None: the registry's
    # None: the registry's (off), or on where the --init-from weights have them
    grounding_refiner: bool | None = None  # the grounding refiner
    mask_input: bool | None = None         # mask prompts into the decoder
    reinit_text_path: bool = False       # fresh text MLP and codebook (e.g. after a collapsed codebook)
    log_every: int = 10
    augment: bool = True
    resume: bool = True
    loss: LossConfig = field(default_factory=LossConfig)
    prompts: PromptSamplerConfig = field(default_factory=lambda: PromptSamplerConfig(point_only_probability=0.0))


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then x0.1 at each milestone."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    decays = sum(step >= fraction * config.max_steps for fraction in config.milestones)
    return 0.1 ** decays


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then a cosine from 1 down to 0.1 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.45 * (1.0 + float(np.cos(np.pi * progress)))


def distributed_context() -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world_size, torch.device("cuda", local)
    return rank, world_size, torch.device("cpu")


class Trainer:
    def __init__(self, config: TrainConfig, model: FluoroSAM | None = None,
                 status_callback: Callable[[dict], None] | None = None) -> None:
        self.config = config
        self.rank, self.world_size, self.device = distributed_context()
        self._seed_everything(config.seed + self.rank)
        overrides = {"image_size": config.image_size} if config.image_size else {}
        if config.text_token_scale is not None:
            overrides["text_token_scale"] = config.text_token_scale
        if config.text_grounding is not None:
            overrides["text_grounding"] = config.text_grounding
        if config.grounding_refiner is not None:
            overrides["grounding_refiner"] = config.grounding_refiner
        if config.mask_input is not None:
            overrides["mask_input"] = config.mask_input
        initial = read_checkpoint(config.init_from, expected_name=config.model) if config.init_from else None
        if initial is not None and model is None:
            # the opt-in parts the starting weights have are built, not refused as unexpected keys
            present = parts_in_weights(initial["model"])
            if present["grounding_encoder"]:
                # training reads one encoder for both paths: the decoder's. The text grounding then
                # trains on it too; `export-weights --grounding-from` puts a grounding encoder back
                log.warning("%s has a separate grounding encoder; training reads one encoder (the decoder's), so "
                            "the grounding encoder is left out and the text path reads the decoder's encoder "
                            "(combine again after training: fluorosam export-weights --grounding-from)",
                            config.init_from)
                initial = {**initial, "model": {key: value for key, value in initial["model"].items()
                                                if not key.startswith(GROUNDING_ENCODER_PREFIXES)}}
            for part in ("grounding_refiner", "mask_input"):
                if present[part]:
                    overrides.setdefault(part, True)
        self.module = (model or build_model(config.model, overrides=overrides)).to(self.device)
        if initial is not None:  # weights from before the dense text grounding: it starts fresh
            load_checkpoint(self.module, config.init_from, expected_name=config.model, payload=initial)
        if config.reinit_text_path:
            for layer in self.module.text_encoder.mlp:
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        if config.freeze_image_encoder:
            self.module.image_encoder.requires_grad_(False)
        if config.freeze_grounding:
            if self.module.text_grounding is None or config.grounding_pretrain_steps:
                raise ValueError("freeze_grounding needs a model with a text grounding and no grounding pre-training")
            self.module.text_grounding.requires_grad_(False)
        if config.embedding_cache_copies < 0:
            raise ValueError(f"embedding_cache_copies must be >= 0, got {config.embedding_cache_copies}")
        if config.embedding_cache_copies and not config.freeze_image_encoder:
            raise ValueError("embedding_cache_copies needs freeze_image_encoder: a trained encoder changes "
                             "the embeddings every step")
        self.embedding_cache: EmbeddingCache | None = None
        self._step_texts: list[str] = []
        self._reseed_generator = torch.Generator().manual_seed(config.seed + self.rank)
        self.step_module = _StepLoss(self.module, self)
        # DDP must wrap a module whose forward() runs the whole step, so that its gradient
        # hooks see every parameter the step used.
        self.runner = (DistributedDataParallel(self.step_module, find_unused_parameters=True)
                       if self.world_size > 1 else self.step_module)
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: learning_rate_factor(s, config))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.step = 0
        self.epoch = 0
        self.grounding_pretrained = False
        self.refiner_pretrained = False
        self.grounding_encoder_tuned = False
        self._stop_requested = threading.Event()
        self.status_callback = status_callback
        self.out_dir = Path(config.out_dir)
        self.rng = np.random.default_rng([config.seed, self.rank])
        if config.resume and (self.out_dir / "checkpoint_last.pt").is_file():
            self.load(self.out_dir / "checkpoint_last.pt")

    def _parameter_groups(self) -> list[dict]:
        """The trainable parameters: the dense text grounding in a group of its own (faster lr)."""
        groups: dict[bool, list[torch.nn.Parameter]] = {True: [], False: []}
        for name, parameter in self.module.named_parameters():
            if parameter.requires_grad:
                groups[name.startswith(GROUNDING_PREFIXES)].append(parameter)
        result = [{"params": groups[False]}]
        if groups[True]:
            result.append({"params": groups[True], "lr": self.config.lr * self.config.grounding_lr_scale})
        return result

    # ---- data ----------------------------------------------------------------------------
    def _dataset(self, epoch: int) -> FluoroSegDataset:
        augmenter = SimToRealAugmenter() if self.config.augment else None
        return FluoroSegDataset(self.config.data_dir, "train", self.rank, self.world_size, augmenter,
                                seed=self.config.seed + 1000 * epoch)

    def _samples(self) -> Iterator[dict]:
        if self.config.embedding_cache_copies:
            yield from self._cached_samples()
            return
        epoch = 0
        while True:
            dataset = self._dataset(epoch)
            yielded = False
            for item in dataset:
                yielded = True
                yield item
            if not yielded:
                raise RuntimeError(f"rank {self.rank} got no training samples from {self.config.data_dir}")
            epoch += 1
            self.epoch = epoch

    def _cached_samples(self) -> Iterator[dict]:
        if self.embedding_cache is None:
            passes = (self._dataset(copy) for copy in range(self.config.embedding_cache_copies))
            # the refiner's maps: to train it, or for the decoder's mask prompt from its map
            with_skips = self.module.grounding_refiner is not None and (
                bool(self.config.refiner_pretrain_steps) or self.mask_prompts_from_refiner)
            self.embedding_cache = EmbeddingCache.build(self.module, passes, self.device, progress=self.rank == 0,
                                                        with_skips=with_skips)
        for count, item in enumerate(self.embedding_cache.stream(self.rng)):
            self.epoch = count // len(self.embedding_cache)
            yield item

    def _batch(self, samples: Iterator[dict]) -> list[dict]:
        return [next(samples) for _ in range(self.config.images_per_step)]

    # ---- one step ------------------------------------------------------------------------
    def train_step(self, items: list[dict]) -> dict[str, float]:
        module = self.module
        module.train()
        if self.config.freeze_image_encoder:
            module.image_encoder.eval()  # frozen batch-norm statistics too
        self._step_texts = []
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            total, losses = self.runner(items)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        metrics = {key: float(np.mean([loss.as_dict()[key] for loss in losses])) for key in losses[0].as_dict()}
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics.update(self._maintain_codebook())
        return metrics

    @torch.no_grad()
    def _maintain_codebook(self) -> dict[str, float]:
        """Re-seed dead VQ codes onto this step's (unquantised) text embeddings, and report usage.
        Without it the codebook collapses: every prompt snaps to one code and text is ignored."""
        text_encoder = self.module.text_encoder
        texts = sorted(set(self._step_texts))
        reseeded = 0
        reseeding = self.config.reseed_dead_codes and self.step <= self.config.reseed_until * self.config.max_steps
        if reseeding and texts and text_encoder.sentence_encoder is not None and self.rank == 0:
            if self.step == 1 and (not self.config.init_from or self.config.reinit_text_path):
                # A fresh codebook sits far from the MLP's first outputs (one code would take every
                # prompt): place every code on real text embeddings instead.
                text_encoder.vq.usage.zero_()
            if text_encoder.vq.dead_codes().numel():  # most steps have none: skip the projection
                z = text_encoder.project(text_encoder.embed_texts(texts))
                reseeded = text_encoder.vq.reseed_dead_codes(z, generator=self._reseed_generator)
        if self.world_size > 1:  # rank 0's codebook and usage are the truth for every replica
            dist.broadcast(text_encoder.vq.codebook.weight.data, src=0)
            dist.broadcast(text_encoder.vq.usage, src=0)
        stats = text_encoder.vq.usage_stats()
        return {"vq_perplexity": stats["perplexity"], "vq_active_fraction": stats["active_fraction"],
                "vq_reseeded": float(reseeded)}

    def _prompt_losses(self, embedding: torch.Tensor, prompts: list[TrainingPrompt], input_size, sample: Sample,
                       pixels: torch.Tensor | None = None):
        module = self.module
        preprocessor = module.preprocessor
        texts = [p.text for p in prompts]
        self._step_texts.extend(texts)
        tokens = module.encode_text(texts=texts)
        grounding = module.ground_text(embedding, tokens)  # the same for every click round
        refined = None
        if pixels is not None and grounding is not None:  # the refiner is trained alone (pretrain_refiner)
            with torch.no_grad():
                refined = module.refine_grounding(grounding.detach(), pixels, tokens)
        targets = self._low_res_targets(prompts, input_size)
        absent = torch.tensor([p.absent for p in prompts], device=self.device)
        rounds = int(self.rng.integers(0, self.config.max_points + 1))
        points = [np.zeros((0, 2)) for _ in prompts]
        labels = [np.zeros(0, dtype=int) for _ in prompts]
        loss_terms = []
        output = None
        for round_index in range(rounds + 1):
            point_input = _pad_points(points, labels, preprocessor, sample.image.shape, self.device) if round_index else None
            mask_prompt = self._mask_prompt(refined, output.masks if round_index else None, loss_terms)
            output = module.decode(embedding, point_input, tokens.tokens, multimask_output=True,
                                   grounding_logits=grounding, mask_logits=mask_prompt)
            weight = torch.ones(len(prompts), device=self.device)
            loss_terms.append(fluorosam_loss(output, targets, absent, tokens.vq_loss, weight, self.config.loss))
            if round_index == rounds:
                break
            best = output.masks.detach()[torch.arange(len(prompts)), loss_terms[-1].best_index] > 0
            for i, prompt in enumerate(prompts):
                if prompt.absent:
                    continue
                click = next_point(_to_original(best[i], preprocessor, input_size, sample.image.shape), prompt.target, self.rng)
                if click is not None:
                    points[i] = np.vstack([points[i], click[0][None]])
                    labels[i] = np.append(labels[i], click[1])
        # text-only (round 0) weighs as much as all the rounds with points together
        text_only = loss_terms[0]
        if len(loss_terms) > 1:
            with_points = loss_terms[1:]
            text_only.total = 0.5 * text_only.total + 0.5 * torch.stack([t.total for t in with_points]).mean()
        if grounding is not None:
            text_only.grounding = grounding_loss(grounding, targets)
            text_only.total = text_only.total + self.config.loss.grounding_weight * text_only.grounding
        return text_only

    def _mask_prompt(self, refined: torch.Tensor | None, previous: torch.Tensor | None,
                     loss_terms: list) -> torch.Tensor | None:
        """The decoder's mask prompt in one click round, for a model that takes them: mostly the
        previous round's best answer (or, in the text-only round, the refined text map), as the
        predictor and SAM's interactive use feed it; sometimes none or the map instead, so that
        callers without a mask prompt are served too."""
        if not self.module.takes_mask_prompts:
            return None
        draw = self.rng.random()
        if previous is not None and draw < self.config.mask_prompt_previous_probability:
            best = loss_terms[-1].best_index
            return previous.detach()[torch.arange(previous.shape[0], device=previous.device), best]
        return refined if draw < 1.0 - self.config.mask_prompt_none_probability else None

    @property
    def mask_prompts_from_refiner(self) -> bool:
        """Whether the decoder's mask prompts include the refined map (the steps need its maps)."""
        return self.module.grounding_refiner is not None and self.module.takes_mask_prompts

    def refiner_pixels(self, embeddings: torch.Tensor, skips: dict[int, torch.Tensor] | None) -> torch.Tensor | None:
        """(B, C, S/4, S/4) pixel features of the grounding refiner, without gradient (it is trained
        alone), for models whose decoder takes the refined map as a mask prompt; None otherwise."""
        if skips is None or not self.mask_prompts_from_refiner:
            return None
        with torch.no_grad():
            return self.module.grounding_refiner.pixel_features(embeddings.detach(), skips)

    # ---- run, checkpoints ----------------------------------------------------------------
    def fit(self, progress: bool = True) -> dict[str, float]:
        from tqdm import tqdm

        samples = self._samples()
        metrics: dict[str, float] = {"step": self.step}  # what a run that trains no step reports
        if self.step == 0 and self.config.grounding_pretrain_steps and not self.grounding_pretrained:
            losses = self.pretrain_grounding(samples, self.config.grounding_pretrain_steps, progress)
            metrics["grounding_loss"] = float(np.mean(losses[-20:]))
            self.grounding_pretrained = True
            self.save(self.out_dir / "checkpoint_last.pt")  # kept even with --steps 0; not repeated on resume
        if self.step == 0 and self.config.refiner_pretrain_steps and not self.refiner_pretrained:
            losses = self.pretrain_refiner(samples, self.config.refiner_pretrain_steps, progress)
            metrics["refiner_loss"] = float(np.mean(losses[-20:]))
            self.refiner_pretrained = True
            self.save(self.out_dir / "checkpoint_last.pt")
        if self.step == 0 and self.config.grounding_encoder_steps and not self.grounding_encoder_tuned:
            losses = self.tune_grounding_with_encoder(samples, self.config.grounding_encoder_steps, progress)
            metrics["grounding_encoder_loss"] = float(np.mean(losses[-20:]))
            self.grounding_encoder_tuned = True
            self.save(self.out_dir / "checkpoint_last.pt")
        bar = tqdm(total=self.config.max_steps, initial=self.step, disable=not progress or self.rank != 0,
                   desc="training", unit="step")
        started, first_step = time.perf_counter(), self.step
        last_step = min(self.config.max_steps, self.config.stop_at_step or self.config.max_steps)
        while self.step < last_step and not self._stop_requested.is_set():
            metrics = self.train_step(self._batch(samples))
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['total']:.3f}", lr=f"{metrics['lr']:.1e}")
            elapsed = time.perf_counter() - started
            rate = (self.step - first_step) * self.config.images_per_step * self.world_size / max(elapsed, 1e-9)
            metrics.update(step=self.step, epoch=self.epoch, images_per_s=rate,
                           eta_s=(self.config.max_steps - self.step) * self.config.images_per_step / max(rate, 1e-9))
            if self.status_callback is not None:
                self.status_callback(metrics)
            if self.step % self.config.checkpoint_every == 0 or self.step == last_step:
                self.save(self.out_dir / "checkpoint_last.pt")
        if self._stop_requested.is_set() and self.step > first_step:
            self.save(self.out_dir / "checkpoint_last.pt")  # a stopped run resumes where it stopped
        bar.close()
        return metrics

    def pretrain_grounding(self, samples: Iterator[dict], steps: int, progress: bool = True) -> list[float]:
        """Train the text grounding head alone on `steps` batches (twice the usual prompts per
        image); the rest of the model is untouched. Returns the loss of every step."""
        return self._train_part("text_grounding", samples, steps, self._grounding_only_loss, "text grounding", progress)

    def pretrain_refiner(self, samples: Iterator[dict], steps: int, progress: bool = True) -> list[float]:
        """Train the grounding refiner alone (the coarse grounding it refines stays as it is) on
        `steps` batches of twice the usual prompts per image. Returns the loss of every step."""
        return self._train_part("grounding_refiner", samples, steps, self._refiner_only_loss, "grounding refiner",
                                progress)

    def tune_grounding_with_encoder(self, samples: Iterator[dict], steps: int, progress: bool = True) -> list[float]:
        """Train the image encoder, the text grounding and its refiner together on the text-map
        loss (`_text_map_loss`) for `steps` batches; the prompt path and decoder are untouched.
        The encoder peaks at `grounding_encoder_lr`, the heads at `lr * grounding_lr_scale`; a
        short warm-up, then a cosine decay to a tenth. Returns the loss of every step."""
        module, config = self.module, self.config
        if module.grounding_refiner is None:
            raise ValueError(f"{config.model} has no grounding refiner: the stage trains the text-only map at S/4")
        if config.freeze_image_encoder or config.embedding_cache_copies:
            raise ValueError("tuning the encoder with the grounding needs the encoder trainable and images "
                             "encoded every step (no freeze_image_encoder, no embedding cache)")
        image_pe = module.prompt_encoder.get_dense_pe().detach()

        def batch_loss(items: list[dict]) -> torch.Tensor:
            embeddings, skips, sizes = embed_items_with_skips(module, items, self.device)
            return sum((self._text_map_loss(item, embeddings[i:i + 1], {s: maps[i:i + 1] for s, maps in skips.items()},
                                            sizes[i], image_pe) for i, item in enumerate(items)),
                       torch.zeros((), device=self.device)) / len(items)

        parts = (module.image_encoder, module.text_grounding, module.grounding_refiner)
        groups = [{"params": list(module.image_encoder.parameters()), "lr": config.grounding_encoder_lr},
                  {"params": [*module.text_grounding.parameters(), *module.grounding_refiner.parameters()],
                   "lr": config.lr * config.grounding_lr_scale}]
        warmup = max(1, min(100, steps // 10))
        return self._optimise(parts, groups, samples, steps, batch_loss, "encoder + grounding", progress,
                              schedule=lambda step: _warmup_cosine(step, warmup, steps), clip=config.grad_clip)

    def _text_map_loss(self, item: dict, embedding: torch.Tensor, skips: dict[int, torch.Tensor],
                       input_size, image_pe: torch.Tensor) -> torch.Tensor:
        """The refined map's grounding loss plus `coarse_map_weight` times the coarse map's, for
        one image's text prompts (gradients reach the encoder through both)."""
        module = self.module
        prompts, sentences = self._text_prompts(item)
        if not prompts:
            return torch.zeros((), device=self.device)
        targets = self._low_res_targets(prompts, input_size)
        coarse = module.text_grounding(embedding, image_pe, sentences)
        refined = module.grounding_refiner(coarse, module.grounding_refiner.pixel_features(embedding, skips), sentences)
        return grounding_loss(refined, targets) + self.config.coarse_map_weight * grounding_loss(coarse, targets)

    def _train_part(self, attribute: str, samples: Iterator[dict], steps: int,
                    loss_of: Callable[[dict, torch.Tensor], torch.Tensor], description: str,
                    progress: bool) -> list[float]:
        """AdamW on the model's part `attribute` alone (at the grounding's faster rate) against
        `loss_of(item, image_pe)`."""
        part = getattr(self.module, attribute)
        if part is None:
            raise ValueError(f"{self.config.model} has no {description} to train")
        image_pe = self.module.prompt_encoder.get_dense_pe().detach()
        if not self.config.freeze_image_encoder:
            raise ValueError(f"training the {description} alone needs freeze_image_encoder: it learns the "
                             "encoder's features as they are")

        def batch_loss(items: list[dict]) -> torch.Tensor:
            return sum((loss_of(item, image_pe) for item in items), torch.zeros((), device=self.device)) / len(items)

        groups = [{"params": list(part.parameters()), "lr": self.config.lr * self.config.grounding_lr_scale}]
        return self._optimise((part,), groups, samples, steps, batch_loss, description, progress)

    def _optimise(self, parts: tuple[torch.nn.Module, ...], groups: list[dict], samples: Iterator[dict], steps: int,
                  batch_loss: Callable[[list[dict]], torch.Tensor], description: str, progress: bool,
                  schedule: Callable[[int], float] | None = None, clip: float | None = None) -> list[float]:
        """AdamW on `groups` (the parameters of `parts`) for `steps` batches of `batch_loss`, with an
        optional learning-rate `schedule` (a factor per step) and gradient clip; under DDP rank 0's
        parts are copied to every rank at the end. Returns the loss of every step."""
        from tqdm import tqdm

        optimizer = torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule) if schedule else None
        for part in parts:
            part.train()
        losses = []
        bar = tqdm(range(steps), desc=description, unit="step", disable=not progress or self.rank != 0)
        for _ in bar:
            loss = batch_loss(self._batch(samples))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_([p for group in groups for p in group["params"]], clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        if self.world_size > 1:  # each rank trained on its own shard: rank 0's parts are the truth
            for part in parts:
                for tensor in (*part.parameters(), *part.buffers()):
                    dist.broadcast(tensor.data, src=0)
        log.info("%s trained for %d steps: loss %.3f -> %.3f", description, steps,
                 float(np.mean(losses[:20])), float(np.mean(losses[-20:])))
        return losses

    def embeddings_of(self, items: list[dict]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """(B, D, h, w) image embeddings and input sizes: cached ones, or encoded now (with a
        gradient only when the image encoder trains)."""
        embeddings, sizes, _ = self._encoded(items, with_skips=False)
        return embeddings, sizes

    def _encoded(self, items: list[dict], with_skips: bool
                 ) -> tuple[torch.Tensor, list[tuple[int, int]], dict[int, torch.Tensor] | None]:
        """Embeddings, input sizes and (with_skips) the backbone maps the refiner reads: cached,
        or from one encoding now (the embeddings with a gradient only when the encoder trains)."""
        if all("embedding" in item for item in items) and (not with_skips or all("skips" in item for item in items)):
            skips = ({stride: torch.cat([item["skips"][stride] for item in items]).to(self.device)
                      for stride in items[0]["skips"]} if with_skips else None)
            return (torch.cat([item["embedding"] for item in items]).to(self.device),
                    [item["input_size"] for item in items], skips)
        with torch.set_grad_enabled(not self.config.freeze_image_encoder):
            if not with_skips:
                return (*embed_items(self.module, items, self.device), None)
            embeddings, skips, sizes = embed_items_with_skips(self.module, items, self.device)
            return embeddings, sizes, {stride: maps.detach() for stride, maps in skips.items()}

    def _low_res_targets(self, prompts: list[TrainingPrompt], input_size) -> torch.Tensor:
        module = self.module
        low = module.image_size // 4
        return torch.stack([_low_res_target(p.target, module.preprocessor, input_size, low)
                            for p in prompts]).to(self.device)

    def _grounding_only_loss(self, item: dict, image_pe: torch.Tensor) -> torch.Tensor:
        module = self.module
        embedding, (size,) = self.embeddings_of([item])
        prompts, sentences = self._text_prompts(item)
        if not prompts:
            return torch.zeros((), device=self.device)
        return grounding_loss(module.text_grounding(embedding.detach(), image_pe, sentences),
                              self._low_res_targets(prompts, size))

    def _refiner_only_loss(self, item: dict, image_pe: torch.Tensor) -> torch.Tensor:
        module = self.module
        prompts, sentences = self._text_prompts(item)
        if not prompts:
            return torch.zeros((), device=self.device)
        embedding, (size,), skips = self._encoded([item], with_skips=True)
        embedding = embedding.detach()
        with torch.no_grad():
            coarse = module.text_grounding(embedding, image_pe, sentences)
        pixels = module.grounding_refiner.pixel_features(embedding, skips)
        return grounding_loss(module.grounding_refiner(coarse, pixels, sentences), self._low_res_targets(prompts, size))

    def _text_prompts(self, item: dict) -> tuple[list[TrainingPrompt], torch.Tensor | None]:
        """Twice the usual prompts for one image, text ones only, and their sentence embeddings."""
        sample = _as_sample(item)
        prompts = [sample_prompt(sample, self.rng, self.config.prompts) for _ in range(2 * self.config.prompts_per_image)]
        prompts = [p for p in prompts if p.text is not None]
        if not prompts:
            return [], None
        with torch.no_grad():
            return prompts, self.module.text_encoder.embed_texts([p.text for p in prompts]).to(self.device)

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return from fit() (thread-safe)."""
        self._stop_requested.set()

    def save(self, path: Path) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.module, path, self.config.model, {
            "step": self.step, "grounding_pretrained": self.grounding_pretrained,
            "refiner_pretrained": self.refiner_pretrained,
            "grounding_encoder_tuned": self.grounding_encoder_tuned,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "train_config": to_jsonable(asdict(self.config)),
            "rng": {"python": random.getstate(), "numpy": self.rng.bit_generator.state,
                    "torch": torch.get_rng_state()},
        })

    def load(self, path: Path) -> None:
        payload = load_checkpoint(self.module, path, expected_name=self.config.model)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.step = int(payload["step"])
        self.grounding_pretrained = bool(payload.get("grounding_pretrained", False))
        self.refiner_pretrained = bool(payload.get("refiner_pretrained", False))
        self.grounding_encoder_tuned = bool(payload.get("grounding_encoder_tuned", False))
        rng = payload.get("rng", {})
        if "numpy" in rng:
            self.rng.bit_generator.state = rng["numpy"]
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        log.info("resumed from %s at step %d", path, self.step)

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)


class _StepLoss(torch.nn.Module):
    """One training step's forward pass: encode the images, decode every prompt, the losses."""

    def __init__(self, model: FluoroSAM, trainer: "Trainer") -> None:
        super().__init__()
        self.model = model
        self._trainer = [trainer]  # a list: not registered as a submodule

    def forward(self, items: list[dict]):
        trainer = self._trainer[0]
        embeddings, sizes, skips = trainer._encoded(items, with_skips=trainer.mask_prompts_from_refiner)
        pixels = trainer.refiner_pixels(embeddings, skips)
        losses = []
        for index, item in enumerate(items):
            sample = _as_sample(item)
            prompts = [sample_prompt(sample, trainer.rng, trainer.config.prompts)
                       for _ in range(trainer.config.prompts_per_image)]
            losses.append(trainer._prompt_losses(embeddings[index:index + 1], prompts, sizes[index], sample,
                                                 None if pixels is None else pixels[index:index + 1]))
        return torch.stack([loss.total for loss in losses]).mean(), losses


def _as_sample(item: dict) -> Sample:
    image = item["image"][0].numpy()
    return Sample(item["key"], item["meta"], image, item["exposed"].numpy(), item["masks"].numpy())


def _low_res_target(mask: np.ndarray, preprocessor, input_size, low: int) -> torch.Tensor:
    """The target mask in the decoder's output frame: resized like the image, padded, at S/4."""
    resized = F.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=tuple(input_size),
                            mode="bilinear", align_corners=False)
    padded = F.pad(resized, (0, preprocessor.image_size - input_size[1], 0, preprocessor.image_size - input_size[0]))
    return F.interpolate(padded, size=(low, low), mode="area")[0, 0] > 0.5


def _to_original(low_res_mask: torch.Tensor, preprocessor, input_size, original_size) -> np.ndarray:
    logits = preprocessor.postprocess_masks(low_res_mask[None, None].float() * 2 - 1, input_size, original_size)
    return (logits[0, 0] > 0).cpu().numpy()


def _pad_points(points: list[np.ndarray], labels: list[np.ndarray], preprocessor, original_size, device):
    longest = max(len(l) for l in labels)
    if longest == 0:
        return None
    coords = np.zeros((len(points), longest, 2), dtype=np.float32)
    padded = np.full((len(points), longest), -1, dtype=np.int64)
    for i, (p, l) in enumerate(zip(points, labels)):
        if len(l):
            coords[i, :len(l)] = preprocessor.apply_coords(p.astype(np.float32), original_size)
            padded[i, :len(l)] = l
    return torch.as_tensor(coords, device=device), torch.as_tensor(padded, device=device)


def main(argv: list[str] | None = None) -> int:
    """`fluorosam train` / `torchrun --nproc_per_node=N -m fluorosam_ros.train.trainer`."""
    import argparse
    from dataclasses import replace

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="fluorosam train", description="Train FluoroSAM on FluoroSeg shards.")
    parser.add_argument("--data", default=defaults.data_dir, help="dataset folder (fluorosam generate --out)")
    parser.add_argument("--out", default=defaults.out_dir, help="checkpoints go here; an existing one is resumed")
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--steps", type=int, default=defaults.max_steps)
    parser.add_argument("--images-per-step", type=int, default=defaults.images_per_step)
    parser.add_argument("--prompts-per-image", type=int, default=defaults.prompts_per_image)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop (with a checkpoint) at this step; a later run resumes the same schedule")
    parser.add_argument("--init-from", default=None, help="start from these model weights (new optimizer)")
    parser.add_argument("--freeze-image-encoder", action="store_true", help="train the prompt path and decoder only")
    parser.add_argument("--embedding-cache", type=int, default=0, metavar="COPIES",
                        help="with --freeze-image-encoder: encode each image COPIES times once and train "
                             "from the cached embeddings (much faster on a CPU)")
    parser.add_argument("--negative-probability", type=float, default=None,
                        help="share of absent-structure prompts (trains the absent head)")
    parser.add_argument("--canonical-text-probability", type=float, default=None, metavar="P",
                        help="share of text prompts that are the structure's canonical name")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=defaults.augment,
                        help="domain-randomisation augmentation of the training images")
    parser.add_argument("--reinit-text-path", action="store_true", help="fresh text MLP and codebook")
    parser.add_argument("--text-token-scale", type=float, default=None, help="multiplier of the text token")
    parser.add_argument("--text-grounding", action=argparse.BooleanOptionalAction, default=None,
                        help="build the model with (or without) the dense text grounding (default: the registry's)")
    parser.add_argument("--pretrain-grounding", type=int, default=defaults.grounding_pretrain_steps, metavar="STEPS",
                        help="a fresh run first trains the text grounding alone for STEPS steps "
                             "(with --freeze-image-encoder)")
    parser.add_argument("--freeze-grounding", action="store_true",
                        help="keep the text grounding as it is (its dense embedding into the decoder still trains)")
    parser.add_argument("--grounding-refiner", action=argparse.BooleanOptionalAction, default=None,
                        help="build the model with (or without) the grounding refiner (default: as the --init-from weights, else the registry's)")
    parser.add_argument("--mask-prompts", action=argparse.BooleanOptionalAction, default=None,
                        help="build the model with (or without) mask prompts into the decoder (default: as the --init-from weights, else the registry's)")
    parser.add_argument("--pretrain-refiner", type=int, default=defaults.refiner_pretrain_steps, metavar="STEPS",
                        help="then train the grounding refiner alone for STEPS steps (with --freeze-image-encoder; "
                             "the text-only answer at S/4)")
    parser.add_argument("--tune-grounding-encoder", type=int, default=defaults.grounding_encoder_steps,
                        metavar="STEPS",
                        help="then train the image encoder with the text grounding and its refiner on the "
                             "text-map loss for STEPS steps (encoder trainable; the decoder is left as it is)")
    parser.add_argument("--grounding-encoder-lr", type=float, default=defaults.grounding_encoder_lr,
                        help="the encoder's peak learning rate in --tune-grounding-encoder")
    parser.add_argument("--reseed-until", type=float, default=defaults.reseed_until, metavar="FRACTION",
                        help="re-seed dead VQ codes during this fraction of the steps only")
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = replace(defaults, data_dir=args.data, out_dir=args.out, model=args.model, max_steps=args.steps,
                     images_per_step=args.images_per_step, prompts_per_image=args.prompts_per_image, lr=args.lr,
                     seed=args.seed, resume=not args.no_resume, stop_at_step=args.stop_at,
                     init_from=args.init_from, freeze_image_encoder=args.freeze_image_encoder,
                     reinit_text_path=args.reinit_text_path, text_token_scale=args.text_token_scale,
                     embedding_cache_copies=args.embedding_cache, reseed_until=args.reseed_until,
                     grounding_pretrain_steps=args.pretrain_grounding, text_grounding=args.text_grounding,
                     augment=args.augment, freeze_grounding=args.freeze_grounding,
                     refiner_pretrain_steps=args.pretrain_refiner, grounding_refiner=args.grounding_refiner,
                     mask_input=args.mask_prompts, grounding_encoder_steps=args.tune_grounding_encoder,
                     grounding_encoder_lr=args.grounding_encoder_lr)
    prompt_changes = {name: value for name, value in (
        ("negative_prompt_probability", args.negative_probability),
        ("canonical_text_probability", args.canonical_text_probability)) if value is not None}
    config = replace(config, prompts=replace(config.prompts, **prompt_changes))
    metrics = Trainer(config).fit()
    log.info("finished at step %s: %s", metrics.get("step"), {k: round(v, 4) for k, v in metrics.items()})
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
