"""`CtcSpeechRecognizer`: our acoustic model + the fused command word model, with the same
interface and `Recognition` as pocketsphinx's `speech.SpeechRecognizer`, so the command node,
the evaluation and the action gate (`speech.parse_recognition`) take either.

Fit. `Recognition.gap` is, per output step, how much less likely the acoustics find the chosen
words than their own unconstrained best path (ln, <= ~0). A command said clearly scores near 0;
talk that the word model pulled towards command words scores below. Averaged over the utterance
a single forced word hides among well-heard ones ("can you see the brain" for "can you check the
drain"), so each word is also scored over its own aligned steps (`decoder.word_deficits`) and
the worst one must reach `word_gap` before the words may act. The gate's thresholds for this
engine are `SpeechConfig.ctc_*`, tuned on the tuning split like pocketsphinx's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..action_gate import REFIT_HINT, ActionGate, ActionGateError, bundled_action_gate, file_sha256
from ..speech import Recognition, SpeechConfig, UtteranceBuffer, corpus_sentences
from ..vocabulary import Vocabulary, default_vocabulary
from .decoder import BeamConfig, beam_search, best_path_log_prob, command_word_model, word_deficits, word_log_probs
from .features import CLEAN_DITHER_LSB, FeatureConfig, frames_of, log_mel
from .transcript import spoken_transcript
from .weights import bundled_speech_weights, load_acoustic_model

log = logging.getLogger(__name__)


class CtcSpeechRecognizer(UtteranceBuffer):
    """Command speech -> text with our CTC model; `recognize(samples)` or start/feed/finish."""

    tuning_gaps = (-99.0, -0.2, -0.1, -0.05, -0.03, -0.015)
    tuning_clear_gaps = (0.0, 0.05, 0.1)
    tuning_word_gaps = (-1e9, -6.0, -4.0, -3.0, -2.0)

    def __init__(self, vocabulary: Vocabulary | None = None, config: SpeechConfig | None = None,
                 weights: Path | str | None = None) -> None:
        started = time.perf_counter()
        self.vocabulary = vocabulary or default_vocabulary()
        config = config or SpeechConfig(engine="ctc")
        if config.sample_rate_hz != FeatureConfig().sample_rate_hz:
            raise ValueError(f"the CTC engine takes {FeatureConfig().sample_rate_hz} Hz audio, not "
                             f"{config.sample_rate_hz} Hz: resample before decoding")
        # the gate's thresholds are on this engine's scale
        self.config = replace(config, reject_gap=config.ctc_reject_gap, motion_gap=config.ctc_motion_gap,
                              clear_gap=config.ctc_clear_gap, word_gap=config.ctc_word_gap,
                              motion_agreement=config.ctc_motion_agreement)
        self.weights_path = Path(weights or config.ctc_weights or bundled_speech_weights())
        self.model, _ = load_acoustic_model(self.weights_path)
        self.action_gate = _load_gate(config.ctc_action_gate, self.weights_path)
        sentences = [spoken_transcript(" ".join(s)).split()
                     for s in corpus_sentences(self.vocabulary, config.lm_sentences, config.lm_seed,
                                               config.lm_optional_p)]
        sentences = [s for s in sentences if s]
        self.words = command_word_model(sentences, config.lm_order)
        self.word_model_sha256 = word_model_sha256(sentences, config.lm_order)
        _warn_if_gate_predates_word_model(self.action_gate, self.word_model_sha256)
        self.beam = BeamConfig(beam=config.ctc_beam, lm_weight=config.ctc_lm_weight,
                               word_bonus=config.ctc_word_bonus, oov_probability=config.ctc_oov_probability)
        _warn_if_gate_decodes_otherwise(self.action_gate, self.decoder_settings)
        self.load_s = time.perf_counter() - started
        self.start()
        log.info("CTC speech recogniser ready in %.1f s (%d command words)", self.load_s,
                 len(self.words.vocabulary))

    @property
    def decoder_settings(self) -> dict:
        """The beam search's settings, as the action gate records them."""
        return asdict(self.beam)

    @torch.no_grad()
    def _decode(self, samples: np.ndarray) -> tuple[str, float, int, dict]:
        # a microphone never gives exact digital silence, synthetic audio does: the same seeded
        # 2 LSB dither the training corpus's clean utterances carry (features.CLEAN_DITHER_LSB)
        dithered = samples.astype(np.float32) + np.random.default_rng(self.config.dither_seed).normal(
            0.0, CLEAN_DITHER_LSB, samples.size).astype(np.float32)
        log_probs, steps = self.model(log_mel(dithered), frames_of(torch.tensor([samples.size])))
        log_probs = log_probs[0, :int(steps[0])].numpy()
        hypotheses = beam_search(log_probs, self.words, self.beam, nbest=max(1, self.config.nbest))
        if not hypotheses or not hypotheses[0].text:
            return "", float("nan"), len(log_probs), {"alternatives": []}
        best = hypotheses[0]
        gap = (best.acoustic - best_path_log_prob(log_probs)) / max(len(log_probs), 1)
        try:
            fits = word_deficits(log_probs, best.text)
        except ValueError:      # the steps cannot hold the letters: nothing to trust
            fits = [(best.text, -math.inf)]
        details = {"alternatives": [h.text for h in hypotheses], "acoustic": best.acoustic,
                   "alternative_scores": [h.score for h in hypotheses],
                   "lm_per_word": float(np.mean(word_log_probs(self.words, best.text, self.beam))),
                   "speech_frames": len(log_probs), "word_fits": fits,
                   "worst_word": min(fits, key=lambda item: item[1])}
        return best.text, gap, len(log_probs), details

    def recognize(self, samples: np.ndarray) -> Recognition:
        """Decode one utterance (int16 mono at the configured rate)."""
        samples = np.asarray(samples, dtype=np.int16)
        # the acoustic model never heard an utterance without speech: it must not be asked
        refusal = self.length_refusal(samples) or self.silence_refusal(samples)
        if refusal:
            return Recognition("", False, reason=refusal)
        started = time.perf_counter()
        text, gap, steps, details = self._decode(samples)
        return self.judged(text, gap, steps, (time.perf_counter() - started) * 1e3, details)


def word_model_sha256(sentences: list[list[str]], order: int) -> str:
    """The fingerprint of the command word model: its corpus and order."""
    digest = hashlib.sha256(f"order {order}\n".encode())
    for sentence in sentences:
        digest.update((" ".join(sentence) + "\n").encode())
    return digest.hexdigest()


def _warn_if_gate_predates_word_model(gate: ActionGate | None, sha256: str) -> None:
    if gate is not None and gate.word_model_sha256 != sha256:
        log.warning("the action gate was fitted with another command word model (%s, now %s: the phrase lists "
                    "or the vocabulary changed); its threshold may no longer keep talk from acting: %s",
                    gate.word_model_sha256[:12] or "none recorded", sha256[:12], REFIT_HINT)


def _warn_if_gate_decodes_otherwise(gate: ActionGate | None, settings: dict) -> None:
    if gate is not None and gate.decoder_settings and gate.decoder_settings != settings:
        changed = sorted(k for k in {**gate.decoder_settings, **settings}
                         if gate.decoder_settings.get(k) != settings.get(k))
        log.warning("the action gate was fitted with other beam-search settings (%s: %s, now %s); its threshold "
                    "may no longer keep talk from acting: %s", ", ".join(changed),
                    [gate.decoder_settings.get(k) for k in changed], [settings.get(k) for k in changed], REFIT_HINT)


def _load_gate(setting: str, weights: Path) -> ActionGate | None:
    """The learned action gate for these acoustic weights; None (the hand thresholds) when it
    is turned off, or, logged, when it is missing, damaged or fitted to other weights."""
    if setting == "off":
        return None
    try:
        path = Path(setting) if setting else bundled_action_gate()
        return ActionGate.load(path, acoustic_sha256=file_sha256(weights))
    except ActionGateError as error:
        log.warning("speech actions use the hand thresholds (ctc_*): %s", error)
        return None
