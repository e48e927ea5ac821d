"""`fluorosam train-speech`: train the command acoustic model on synthetic speech (CTC).

The clean corpus is spoken once and cached (`--data`); every step draws a fresh room version
of each utterance (`corpus.RoomAugmenter`). Validation: character and word error rates of
best-path decoding on utterances of a separate seed, in the same training voices and rooms
(the evaluation's voices stay unseen until `fluorosam evaluate-language`).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..evaluate import word_errors as edit_distance
from .corpus import HELD_OUT_ACCENTS, VARIANT_NAMINGS, AugmentConfig, RoomAugmenter, SpokenCorpus, synthesize_corpus
from .features import FeatureConfig, frames_of, log_mel
from .model import AcousticConfig, CommandAcousticModel
from .transcript import collapse, encode
from .weights import BUNDLED_NAME, load_checkpoint, save_weights

log = logging.getLogger(__name__)


@dataclass
class TrainSpeechConfig:
    utterances: int = 24000
    validation: int = 300
    seed: int = 0
    steps: int = 4000
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    clip: float = 5.0
    flite_share: float = 0.3
    off_topic_share: float = 0.12
    variant_naming: str = "files"       # corpus.VARIANT_NAMINGS; "listed" reproduces runs 1-9
    spelled_share: float = 0.85         # abbreviations spoken spelled ("AP": "ay pee"); runs 1-10: 0
    validate_every: int = 500
    workers: int = 2
    model: AcousticConfig = field(default_factory=AcousticConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for name in ("flite_share", "off_topic_share", "spelled_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:      # also refuses NaN
                raise ValueError(f"{name} is a share of the corpus, in [0, 1]; got {value}")


def batch_features(audio: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (batch, frames, mels), frames per item) of a list of int16 utterances."""
    lengths = torch.tensor([len(a) for a in audio])
    padded = torch.zeros(len(audio), int(lengths.max()))
    for row, a in enumerate(audio):
        padded[row, :len(a)] = torch.from_numpy(a.astype(np.float32))
    return log_mel(padded, FeatureConfig(), lengths), frames_of(lengths)


def load_or_speak(path: Path, count: int, seed: int, config: TrainSpeechConfig) -> SpokenCorpus:
    if path.is_file():
        corpus = SpokenCorpus.load(path)
        log.info("%d utterances from %s", len(corpus), path)
        return corpus
    corpus = synthesize_corpus(count, seed, config.workers, config.flite_share, config.off_topic_share,
                               variant_naming=config.variant_naming, spelled_share=config.spelled_share)
    corpus.save(path)
    log.info("spoke %d utterances (%.1f h) into %s", len(corpus), corpus.samples.size / 16000 / 3600, path)
    return corpus


@torch.no_grad()
def error_rates(model: CommandAcousticModel, audio: list[np.ndarray], transcripts: list[str],
                batch: int = 32) -> dict[str, float]:
    """Character and word error rates of best-path decoding."""
    model.eval()
    chars = char_errors = words = word_errors = 0
    for start in range(0, len(audio), batch):
        features, frames = batch_features(audio[start:start + batch])
        log_probs, steps = model(features, frames)
        for row, truth in enumerate(transcripts[start:start + batch]):
            heard = collapse(log_probs[row, :steps[row]].argmax(-1))
            chars += len(truth)
            char_errors += edit_distance(truth, heard)
            words += len(truth.split())
            word_errors += edit_distance(truth.split(), heard.split())
    model.train()
    return {"cer": char_errors / max(chars, 1), "wer": word_errors / max(words, 1)}


def train(config: TrainSpeechConfig, data: Path, out: Path, init: Path | None = None,
          progress: bool = True) -> dict:
    from tqdm import tqdm

    if out.is_dir() or not out.suffix:     # a folder: the weights go inside it, found before hours of training
        out = out / BUNDLED_NAME
    torch.manual_seed(config.seed)
    # runs 1-9's corpora ("listed" variant names) keep their cache names
    naming = "" if config.variant_naming == "listed" else f"_variants-{config.variant_naming}"
    naming += f"_spelled{round(100 * config.spelled_share)}" if config.spelled_share > 0 else ""
    corpus = load_or_speak(data / f"train_{config.utterances}_seed{config.seed}{naming}.npz", config.utterances,
                           config.seed, config)
    held = load_or_speak(data / f"validation_{config.validation}_seed{config.seed + 1000}{naming}.npz",
                         config.validation, config.seed + 1000, config)
    validation_room = RoomAugmenter(config.seed + 2000, config.augment)
    validation_audio = [validation_room(held.audio(i)) for i in range(len(held))]
    room = RoomAugmenter(config.seed, config.augment)
    model = CommandAcousticModel(config.model)
    if init is not None:
        model.load_state_dict({k: v.float() for k, v in load_checkpoint(init)["state_dict"].items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=max(config.steps, 1),
                                                   pct_start=0.08)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    rng = np.random.default_rng(config.seed)
    history, best, started, running = [], math.inf, time.time(), None
    bar = tqdm(range(config.steps), desc="train-speech", unit="step", disable=not progress)
    for step in bar:
        indices = rng.integers(0, len(corpus), config.batch)
        features, frames = batch_features([room(corpus.audio(i)) for i in indices])
        labels = [encode(corpus.transcripts[i]) for i in indices]
        log_probs, steps = model(features, frames)
        loss = ctc(log_probs.transpose(0, 1), torch.cat(labels), steps, torch.tensor([len(t) for t in labels]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}")
        if (step + 1) % config.validate_every == 0 or step + 1 == config.steps:
            rates = error_rates(model, validation_audio, held.transcripts)
            history.append({"step": step + 1, "loss": round(running, 4), **{k: round(v, 4) for k, v in rates.items()},
                            "minutes": round((time.time() - started) / 60, 1)})
            log.info("step %d: loss %.3f, validation CER %.3f WER %.3f", step + 1, running, rates["cer"], rates["wer"])
            metadata = {"training": {**asdict(config), "history": history, "voice_count": len(set(corpus.voices)),
                                     "held_out_accents": list(HELD_OUT_ACCENTS)}}
            save_weights(model, out.with_name(out.stem + "_last.pt"), metadata)
            if rates["wer"] < best:
                best = rates["wer"]
                save_weights(model, out, metadata)
    return {"history": history, "best_wer": best, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluorosam train-speech",
                                     description="Train the command acoustic model on synthetic speech.")
    parser.add_argument("--data", type=Path, default=Path("output/speech_corpus"),
                        help="folder for the spoken corpus cache")
    parser.add_argument("--out", type=Path, default=Path("output/speech/command_asr.pt"),
                        help="the weights file (a folder: command_asr.pt inside it)")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights")
    parser.add_argument("--utterances", type=int, default=TrainSpeechConfig.utterances)
    parser.add_argument("--validation", type=int, default=TrainSpeechConfig.validation)
    parser.add_argument("--steps", type=int, default=TrainSpeechConfig.steps)
    parser.add_argument("--batch", type=int, default=TrainSpeechConfig.batch)
    parser.add_argument("--lr", type=float, default=TrainSpeechConfig.lr)
    parser.add_argument("--seed", type=int, default=TrainSpeechConfig.seed)
    parser.add_argument("--validate-every", type=int, default=TrainSpeechConfig.validate_every)
    parser.add_argument("--flite-share", type=float, default=TrainSpeechConfig.flite_share)
    parser.add_argument("--workers", type=int, default=TrainSpeechConfig.workers)
    parser.add_argument("--variant-naming", choices=VARIANT_NAMINGS, default=TrainSpeechConfig.variant_naming,
                        help="how espeak-ng speaker variants are named: 'files' selects them all; "
                             "'listed' (runs 1-9 of the bundled model) mostly falls back to the plain voice")
    parser.add_argument("--spelled-share", type=float, default=TrainSpeechConfig.spelled_share,
                        help="how often AP, PA, RAO, LAO, GI are spoken spelled, as people say them (runs 1-10: 0)")
    args = parser.parse_args(argv)
    try:
        config = TrainSpeechConfig(utterances=args.utterances, validation=args.validation, steps=args.steps,
                                   batch=args.batch, lr=args.lr, seed=args.seed, validate_every=args.validate_every,
                                   flite_share=args.flite_share, workers=args.workers,
                                   variant_naming=args.variant_naming, spelled_share=args.spelled_share)
    except ValueError as error:
        parser.error(str(error))
    result = train(config, args.data, args.out, args.init)
    for row in result["history"]:
        print(row)
    print(f"best validation WER {result['best_wer']:.3f}: {result['out']}")
    return 0
