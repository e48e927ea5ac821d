"""A statistical language model of our commands, built here from the command grammar.

The speech recogniser decodes with an n-gram model rather than with the strict JSGF grammar:
a grammar's finite-state search, fed imperfect audio, often ends in a partial path ("stop" ->
"stop the"), while an n-gram search always has a complete, best-scoring word string, which the
text parser (which reads paraphrases anyway) then interprets.

The pieces, all small and deterministic:
- `parse_expansion` reads the JSGF right-hand sides the grammar is written in (alternatives
  `a | b`, groups `( )`, optionals `[ ]`, rule references `<name>`, weights `/2/`);
- `sample_sentences` draws a seeded corpus from those rules (uniform over alternatives unless
  weighted; an optional part is taken with probability `optional_p`);
- `NGramCounts` counts n-grams of the corpus (with <s> and </s>);
- `arpa_text` writes a backoff model in ARPA format: absolute discounting per order (the
  discount from the count-of-counts, Ney's n1 / (n1 + 2 n2)), Katz-style backoff weights, and a
  unigram floor that gives every word of the lexicon a probability. Optional "background" words
  (frequent English words) receive a fixed share of the unigram mass: off-topic speech can then
  come out as the everyday words it is made of, which the parser refuses, instead of being
  forced into the nearest command.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

BOS, EOS = "<s>", "</s>"


# ------------------------------------------------------------------------------------------
# JSGF right-hand sides
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Word:
    text: str


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple


@dataclass(frozen=True)
class Alt:
    options: tuple          # of (weight, node)


@dataclass(frozen=True)
class Opt:
    node: object


_TOKEN = re.compile(r"\s*(<[^<>\s]+>|/[0-9.]+/|[()\[\]|]|[^\s()\[\]|<>/]+)")


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read JSGF expansion at {text[position:position + 20]!r}")
        tokens.append(match.group(1))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tokens


def parse_expansion(text: str):
    """The tree of one JSGF right-hand side ("show [me] (the | a) <structure> | stop")."""
    tokens = _tokens(text)
    position = 0

    def alternatives(closing: str | None):
        nonlocal position
        options = []
        while True:
            weight = 1.0
            if position < len(tokens) and tokens[position].startswith("/"):
                weight = float(tokens[position].strip("/"))
                position += 1
            options.append((weight, sequence()))
            if position < len(tokens) and tokens[position] == "|":
                position += 1
                continue
            break
        if closing is not None:
            if position >= len(tokens) or tokens[position] != closing:
                raise ValueError(f"expected {closing!r} in {text!r}")
            position += 1
        return options[0][1] if len(options) == 1 else Alt(tuple(options))

    def sequence():
        nonlocal position
        items = []
        while position < len(tokens) and tokens[position] not in ("|", ")", "]"):
            token = tokens[position]
            position += 1
            if token == "(":
                items.append(alternatives(")"))
            elif token == "[":
                items.append(Opt(alternatives("]")))
            elif token.startswith("<"):
                name = token[1:-1]
                if name not in ("NULL", "VOID"):
                    items.append(Ref(name))
            elif token.startswith("/"):
                raise ValueError(f"a weight must start an alternative: {text!r}")
            else:
                items.append(Word(token))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    tree = alternatives(None)
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position]!r} in {text!r}")
    return tree


def sample_sentences(rules: Mapping[str, str], start: str, count: int, seed: int = 0,
                     optional_p: float = 0.4) -> list[list[str]]:
    """`count` word sequences drawn from rule `start` (seeded: the same corpus every time)."""
    trees = {name: parse_expansion(body) for name, body in rules.items()}
    rng = random.Random(seed)

    def expand(node, out: list[str], depth: int) -> None:
        if depth > 50:
            raise ValueError("grammar recursion too deep")
        if isinstance(node, Word):
            out.append(node.text)
        elif isinstance(node, Ref):
            if node.name not in trees:
                raise KeyError(f"undefined rule <{node.name}>")
            expand(trees[node.name], out, depth + 1)
        elif isinstance(node, Seq):
            for item in node.items:
                expand(item, out, depth)
        elif isinstance(node, Opt):
            if rng.random() < optional_p:
                expand(node.node, out, depth)
        elif isinstance(node, Alt):
            total = sum(w for w, _ in node.options)
            pick, acc = rng.random() * total, 0.0
            for weight, option in node.options:
                acc += weight
                if pick < acc:
                    expand(option, out, depth)
                    break
            else:
                expand(node.options[-1][1], out, depth)

    sentences = []
    for _ in range(count):
        words: list[str] = []
        expand(trees[start], words, 0)
        sentences.append(words)
    return sentences


def rule_words(rules: Mapping[str, str]) -> set[str]:
    """Every terminal word of the rules."""
    words: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, Word):
            words.add(node.text)
        elif isinstance(node, Seq):
            for item in node.items:
                walk(item)
        elif isinstance(node, Opt):
            walk(node.node)
        elif isinstance(node, Alt):
            for _, option in node.options:
                walk(option)

    for body in rules.values():
        walk(parse_expansion(body))
    return words


# ------------------------------------------------------------------------------------------
# Counting and the ARPA model
# ------------------------------------------------------------------------------------------

class NGramCounts:
    """n-gram counts of sentences, orders 1..`order`, each sentence wrapped in <s> ... </s>."""

    def __init__(self, order: int = 3) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self.counts: list[Counter] = [Counter() for _ in range(order)]   # [n-1][ngram tuple]

    def add(self, words: Sequence[str], weight: int = 1) -> None:
        tokens = [BOS] + list(words) + [EOS]
        for n in range(1, self.order + 1):
            for i in range(len(tokens) - n + 1):
                gram = tuple(tokens[i:i + n])
                if gram == (BOS,):
                    continue            # <s> is never predicted
                self.counts[n - 1][gram] += weight

    def add_all(self, sentences: Iterable[Sequence[str]], weight: int = 1) -> "NGramCounts":
        for sentence in sentences:
            self.add(sentence, weight)
        return self

    def vocabulary(self) -> set[str]:
        return {gram[0] for gram in self.counts[0]}


def _discount(counts: Counter) -> float:
    """Ney's absolute discount n1 / (n1 + 2 n2), kept within [0.1, 0.9]."""
    of = Counter(counts.values())
    n1, n2 = of.get(1, 0), of.get(2, 0)
    if n1 == 0:
        return 0.5
    return min(0.9, max(0.1, n1 / (n1 + 2 * n2)))


@dataclass
class BackoffModel:
    """Probabilities (natural, not log) and backoff weights of an n-gram model."""

    order: int
    probs: list[dict]          # [n-1][ngram] -> p(w | h)
    backoffs: list[dict]       # [n-1][ngram] -> alpha(ngram as a history), orders 1..order-1

    def prob(self, word: str, history: Sequence[str] = ()) -> float:
        """p(word | history) with backoff (history longer than order-1 is cut)."""
        history = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        alpha = 1.0
        while True:
            gram = history + (word,)
            p = self.probs[len(gram) - 1].get(gram)
            if p is not None:
                return alpha * p
            if not history:
                return 0.0
            alpha *= self.backoffs[len(history) - 1].get(history, 1.0)
            history = history[1:]


def build_model(counts: NGramCounts, lexicon: Iterable[str] = (), background: Mapping[str, float] | None = None,
                background_mass: float = 0.0, floor_mass: float = 0.01) -> BackoffModel:
    """Backoff model of `counts`.

    Unigrams: (1 - floor - background) of the mass by discounted counts; `floor_mass` spread
    evenly over every word (corpus words and `lexicon`: no word of the dictionary is
    impossible); `background_mass` spread over `background` words in proportion to their
    weights (e.g. their frequency in general English).
    Higher orders: absolute discounting, the freed mass given to the lower order (Katz)."""
    if not 0 <= background_mass < 1 or not 0 <= floor_mass < 1 or background_mass + floor_mass >= 1:
        raise ValueError("background_mass and floor_mass must be in [0, 1) and sum below 1")
    order = counts.order
    background = dict(background or {})
    if not background:
        background_mass = 0.0
    words = counts.vocabulary() | set(lexicon) | set(background)
    words.discard(BOS)
    unigram_counts = counts.counts[0]
    total = sum(unigram_counts.values())
    d1 = _discount(unigram_counts)
    seen_mass = 1.0 - floor_mass - background_mass
    # discounted counts; what the discount frees goes to the floor as well
    freed = d1 * len(unigram_counts) / total if total else 1.0
    floor_each = (floor_mass + seen_mass * freed) / len(words)
    background_total = sum(background.values())
    probs: list[dict] = [dict() for _ in range(order)]
    for word in words:
        p = floor_each
        c = unigram_counts.get((word,), 0)
        if c:
            p += seen_mass * (c - d1) / total
        if word in background and background_total > 0:
            p += background_mass * background[word] / background_total
        probs[0][(word,)] = p
    backoffs: list[dict] = [dict() for _ in range(order)]
    model = BackoffModel(order, probs, backoffs)
    for n in range(2, order + 1):
        grams = counts.counts[n - 1]
        d = _discount(grams)
        by_history: dict[tuple, list[tuple[str, int]]] = defaultdict(list)
        for gram, c in grams.items():
            by_history[gram[:-1]].append((gram[-1], c))
        for history, followers in by_history.items():
            h_total = sum(c for _, c in followers)
            for word, c in followers:
                probs[n - 1][history + (word,)] = (c - d) / h_total
        # backoff weights of every history of order n-1 (those seen with followers)
        for history, followers in by_history.items():
            seen_p = sum(probs[n - 1][history + (w,)] for w, _ in followers)
            lower_p = sum(model.prob(w, history[1:]) for w, _ in followers)
            alpha = (1.0 - seen_p) / max(1e-12, 1.0 - lower_p)
            backoffs[n - 2][history] = alpha
    # <s> is a history but never predicted: it needs a unigram entry (probability ~0)
    backoffs[0].setdefault((BOS,), 1.0)
    return model


def arpa_text(model: BackoffModel) -> str:
    """The model as ARPA text (log10 probabilities and backoff weights)."""
    def log10(p: float) -> float:
        return math.log10(p) if p > 0 else -99.0

    sections = []
    unigrams = dict(model.probs[0])
    entries_per_order = []
    for n in range(1, model.order + 1):
        grams = model.probs[n - 1] if n > 1 else unigrams
        lines = []
        if n == 1:
            lines.append(f"-99.0000 {BOS} {log10(model.backoffs[0].get((BOS,), 1.0)):.4f}")
        for gram in sorted(grams):
            p = grams[gram]
            line = f"{log10(p):.4f} {' '.join(gram)}"
            if n < model.order:
                bow = model.backoffs[n - 1].get(gram)
                if bow is not None:
                    line += f" {log10(bow):.4f}"
            lines.append(line)
        entries_per_order.append(lines)
    header = ["", "\\data\\"] + [f"ngram {n}={len(lines)}" for n, lines in enumerate(entries_per_order, 1)]
    for n, lines in enumerate(entries_per_order, 1):
        sections += ["", f"\\{n}-grams:"] + lines
    return "\n".join(header + sections + ["", "\\end\\", ""])


def build_arpa(sentences: Iterable[Sequence[str]], order: int = 3, lexicon: Iterable[str] = (),
               background: Mapping[str, float] | None = None, background_mass: float = 0.0,
               floor_mass: float = 0.01) -> str:
    """ARPA text of an n-gram model of `sentences` (see `build_model`)."""
    counts = NGramCounts(order).add_all(sentences)
    return arpa_text(build_model(counts, lexicon, background, background_mass, floor_mass))
