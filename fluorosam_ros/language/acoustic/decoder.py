"""CTC prefix beam search with our command word model fused in (shallow fusion).

The acoustic model spells what it hears; the beam keeps the spellings that are also likely
command word sequences: each completed word adds `lm_weight * ln p(word | two words before)`
of the command trigram model (`lm.py`, drawn from `speech.corpus_rules` in spoken form, the
same source as pocketsphinx's model) plus `word_bonus`. A word the model does not know costs
`ln oov_probability` and `ln oov_letter_probability` per letter; it is still allowed, so talk
that is not a command is written out as heard and the parser refuses it, instead of being
forced into the nearest command.

Spelling. With `lexicon_only` (the default) every word must be one the word model knows: a
letter that would leave every known spelling is not extended, so a half-heard word ends as the
nearest known word the acoustics allow ("callimate" cannot be written; "collimate" costs the
one letter the model heard differently). Talk that is not a command is then forced into command
words, with a poor acoustic fit, which the recogniser's gate rejects.

Word boundaries. Synthetic and fluent speech runs words together, so the acoustic model often
writes no space ("collimatetotheheart"). Where the word being spelled is a known word, the
beam may therefore also start a new word without a space from the acoustics (at a cost of
`implicit_space_cost`); the letter-wise charge on unknown words is what makes the word model
prefer "collimate to the heart" to one long unknown word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .transcript import ALPHABET

SPACE = ALPHABET.index(" ")
NEG_INF = -math.inf


def _logsumexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


@dataclass(frozen=True)
class BeamConfig:
    beam: int = 12
    lm_weight: float = 0.8
    word_bonus: float = 1.0
    oov_probability: float = 1e-6
    oov_letter_probability: float = 0.3
    implicit_space_cost: float = 1.0
    lexicon_only: bool = True
    prune_log_prob: float = -9.0      # characters less likely than this at a step are not extended
    max_chars_per_step: int = 6


@dataclass(frozen=True)
class Hypothesis:
    text: str
    score: float              # acoustic + fused word model, ln
    acoustic: float           # ln P_ctc(text | audio)


class WordModel:
    """ln p(word | history) of a backoff n-gram model, cached."""

    def __init__(self, model, vocabulary: set[str]) -> None:
        self.model = model
        self.vocabulary = {w for w in vocabulary if not w.startswith("<")}
        self.prefixes = {w[:i] for w in self.vocabulary for i in range(1, len(w) + 1)}
        self._cache: dict[tuple, float] = {}

    def spells(self, partial: str) -> bool:
        """Whether some known word starts with `partial`."""
        return partial in self.prefixes

    def log_prob(self, word: str, history: tuple[str, ...], oov_probability: float,
                 oov_letter_probability: float = 1.0) -> float:
        key = (word,) + history[-(self.model.order - 1):]
        value = self._cache.get(key)
        if value is None:
            p = self.model.prob(word, history) if word in self.vocabulary or word == "</s>" else 0.0
            value = math.log(p) if p > 0 else \
                math.log(oov_probability) + len(word) * math.log(oov_letter_probability)
            self._cache[key] = value
        return value


@dataclass
class _Beam:
    blank: float = NEG_INF        # ln P(prefix, ending in blank)
    label: float = NEG_INF        # ln P(prefix, ending in its last label)
    lm: float = 0.0               # fused word-model score of the completed words

    @property
    def acoustic(self) -> float:
        return _logsumexp(self.blank, self.label)


def _words(prefix: str) -> tuple[str, ...]:
    return tuple(prefix.split())


def _word_score(words: WordModel | None, prefix: str, config: BeamConfig) -> float:
    """Fused score of the word that `prefix` just completed (its last word)."""
    completed = _words(prefix)
    if not completed:
        return 0.0
    if words is None:
        return config.word_bonus
    return config.lm_weight * words.log_prob(completed[-1], ("<s>",) + completed[:-1], config.oov_probability,
                                             config.oov_letter_probability) + config.word_bonus


def _ends_known_word(words: WordModel | None, prefix: str) -> bool:
    return words is not None and bool(prefix) and prefix[-1] != " " and \
        prefix.rsplit(" ", 1)[-1] in words.vocabulary


def beam_search(log_probs: np.ndarray, words: WordModel | None = None, config: BeamConfig = BeamConfig(),
                nbest: int = 10) -> list[Hypothesis]:
    """N-best transcripts of (steps, classes) CTC log-probabilities, best first."""
    beams: dict[str, _Beam] = {"": _Beam(blank=0.0)}
    constrained = words is not None and config.lexicon_only
    for step in log_probs:
        candidates = np.argsort(step)[::-1][:config.max_chars_per_step]
        candidates = [int(c) for c in candidates if step[c] >= config.prune_log_prob or c == 0]
        next_beams: dict[str, _Beam] = {}

        def slot(prefix: str, lm: float) -> _Beam:
            beam = next_beams.get(prefix)
            if beam is None:
                beam = next_beams[prefix] = _Beam(lm=lm)
            return beam

        for prefix, beam in beams.items():
            total = beam.acoustic
            last = prefix[-1] if prefix else ""
            # per prefix, not per letter: the word it is spelling, and its score if it ends here
            in_word = bool(prefix) and last != " "
            spelling = prefix.rsplit(" ", 1)[-1] if in_word else ""
            known_end = in_word and words is not None and spelling in words.vocabulary
            ended = beam.lm + _word_score(words, prefix, config) if in_word else beam.lm
            for c in candidates:
                p = float(step[c])
                if c == 0:
                    target = slot(prefix, beam.lm)
                    target.blank = _logsumexp(target.blank, total + p)
                    continue
                char = ALPHABET[c]
                if char == " " and (not prefix or last == " "):
                    target = slot(prefix, beam.lm)      # leading or doubled spaces are not words
                    target.label = _logsumexp(target.label, total + p)
                    continue
                # the same label again needs a blank between, else it merges into the prefix
                reach = beam.blank + p if char == last else total + p
                if char == last:
                    same = slot(prefix, beam.lm)
                    same.label = _logsumexp(same.label, beam.label + p)
                if char == " ":
                    if constrained and not known_end:
                        continue                        # a space would end an unknown word
                    new = slot(prefix + " ", ended)
                    new.label = _logsumexp(new.label, reach)
                    continue
                if known_end and (not constrained or words.spells(char)):
                    split = slot(prefix + " " + char, ended - config.implicit_space_cost)
                    split.label = _logsumexp(split.label, reach)
                if constrained and not words.spells(spelling + char):
                    continue
                new = slot(prefix + char, beam.lm)
                new.label = _logsumexp(new.label, reach)
        beams = dict(sorted(next_beams.items(), key=lambda item: item[1].acoustic + item[1].lm,
                            reverse=True)[:config.beam])
    finished = []
    for prefix, beam in beams.items():
        text = prefix.strip()
        if constrained and prefix and not prefix.endswith(" ") and not _ends_known_word(words, prefix):
            continue                                   # ends inside a word
        lm = beam.lm
        if prefix and not prefix.endswith(" "):
            lm += _word_score(words, prefix, config)
        if words is not None and text:
            lm += config.lm_weight * words.log_prob("</s>", ("<s>",) + _words(text), config.oov_probability,
                                                    config.oov_letter_probability)
        finished.append(Hypothesis(" ".join(text.split()), beam.acoustic + lm, beam.acoustic))
    merged: dict[str, Hypothesis] = {}
    for hypothesis in sorted(finished, key=lambda h: h.score, reverse=True):
        merged.setdefault(hypothesis.text, hypothesis)
    return list(merged.values())[:nbest]


def word_log_probs(words: WordModel, text: str, config: BeamConfig = BeamConfig()) -> list[float]:
    """ln p of each word of `text` and of its end under the word model, unweighted."""
    tokens = tuple(text.split())
    history = ("<s>",) + tokens
    return [words.log_prob(token, history[:i + 1], config.oov_probability, config.oov_letter_probability)
            for i, token in enumerate(tokens + ("</s>",))]


def best_path_log_prob(log_probs: np.ndarray) -> float:
    """ln of the single most likely frame-by-frame path (the acoustics with no constraint)."""
    return float(np.max(log_probs, axis=-1).sum())


def command_word_model(sentences: Sequence[Sequence[str]], order: int = 3) -> WordModel:
    """The fused word model of spoken-form command sentences."""
    from ..lm import NGramCounts, build_model

    counts = NGramCounts(order).add_all(sentences)
    return WordModel(build_model(counts), counts.vocabulary())


def align(log_probs: np.ndarray, text: str) -> np.ndarray:
    """Viterbi CTC alignment of `text`: for every step, the index of the letter of `text` it
    emits, or -1 for a blank. Raises ValueError when the steps cannot hold the text."""
    labels = [ALPHABET.index(c) for c in text]
    states = np.zeros(2 * len(labels) + 1, dtype=int)
    states[1::2] = labels
    steps, count = len(log_probs), len(states)
    # a state may also come from two back: from a letter over a blank, to a different letter
    skip = np.zeros(count, dtype=bool)
    skip[3::2] = states[3::2] != states[1:-2:2]
    score = np.full(count, NEG_INF)
    score[:2] = log_probs[0, states[:2]]
    came_from = np.zeros((steps, count), dtype=np.int8)
    for t in range(1, steps):
        stay, one = score, np.concatenate([[NEG_INF], score[:-1]])
        two = np.where(skip, np.concatenate([[NEG_INF, NEG_INF], score[:-2]]), NEG_INF)
        options = np.stack([stay, one, two])
        came_from[t] = options.argmax(axis=0)
        score = options.max(axis=0) + log_probs[t, states]
    end = count - 1 if count == 1 or score[-1] >= score[-2] else count - 2
    if not np.isfinite(score[end]):
        raise ValueError(f"{steps} steps cannot hold {text!r}")
    path = np.empty(steps, dtype=int)
    for t in range(steps - 1, -1, -1):
        path[t] = end
        end -= int(came_from[t, end])
    return np.where(path % 2 == 1, (path - 1) // 2, -1)


def word_deficits(log_probs: np.ndarray, text: str) -> list[tuple[str, float]]:
    """For each word of `text`: how much less likely (ln) the acoustics find it, over the steps
    aligned to it, than their own best path over those steps. A word the model heard scores
    near 0; a word the word model forced onto other speech scores far below. Spaces are aligned
    too (the model writes most of them); where the steps cannot hold a space the beam placed
    without the acoustics, the letters alone are."""
    words = text.split()
    if not words:
        return []
    for joiner in (" ", ""):
        try:
            aligned = joiner.join(words)
            emitted = align(log_probs, aligned)
            break
        except ValueError:
            if not joiner:
                raise
    labels = np.array([ALPHABET.index(c) for c in aligned])
    chosen = log_probs[np.arange(len(log_probs)), np.where(emitted >= 0, labels[np.maximum(emitted, 0)], 0)]
    deficit = log_probs.max(axis=1) - chosen
    out, first = [], 0
    for word in words:
        steps = np.flatnonzero((emitted >= first) & (emitted < first + len(word)))
        out.append((word, -float(deficit[steps[0]:steps[-1] + 1].sum())))
        first += len(word) + len(joiner)
    return out
