"""Typing slips in typed commands: "shwo sacrum ap", "rotaet left 5 deg", "zoom otu".

A word is corrected only when it is not English (pocketsphinx's 134,000-word dictionary) and
not a command or anatomy word, and exactly one command or anatomy word is one slip away: a
letter added, dropped, changed, or two neighbours swapped (two slips for words of 8+ letters
that keep their first letter), or two command words typed without the space between them
("showme"). Real words are never touched, so "shut the door" does not
become "shot the door". Speech needs none of this: the recogniser only writes words it knows.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence

_WORD = re.compile(r"^[a-z]{3,}$")


def slips(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours), or
    `limit + 1` as soon as it must exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


class TypoCorrector:
    """Corrects tokens of a typed command towards `command_words`; see the module docstring."""

    def __init__(self, command_words: Iterable[str], english_words: Iterable[str]) -> None:
        self.all_command_words = frozenset(command_words)        # "ap" and "pa" too, for spelled letters
        self.command_words = frozenset(w for w in self.all_command_words if _WORD.match(w))
        english = frozenset(english_words)
        # without a dictionary of real words ("shut" is not "shot") no word may be corrected
        self.enabled = bool(english)
        self.known = self.command_words | english
        self._by_length: dict[int, list[str]] = {}
        for word in self.command_words:
            self._by_length.setdefault(len(word), []).append(word)

    def correct_word(self, word: str) -> str:
        if not self.enabled or not _WORD.match(word) or word in self.known:
            return word
        limit = 2 if len(word) >= 8 else 1
        best: list[tuple[int, str]] = []
        for length in range(len(word) - limit, len(word) + limit + 1):
            for candidate in self._by_length.get(length, ()):
                if limit == 2 and candidate[0] != word[0]:
                    continue
                distance = slips(word, candidate, limit)
                if distance <= limit:
                    best.append((distance, candidate))
        if not best:
            return word
        best.sort()
        closest = [c for d, c in best if d == best[0][0]]
        return closest[0] if len(closest) == 1 else word

    def split_glued(self, word: str) -> list[str]:
        """A word typed without its space ("showme", "whereis", "moveleft") as the two command
        words it is made of, when exactly one split makes two; else [word]."""
        if not self.enabled or len(word) < 5 or not _WORD.match(word) or word in self.known:
            return [word]
        splits = [[word[:i], word[i:]] for i in range(2, len(word) - 1)
                  if word[:i] in self.all_command_words and word[i:] in self.all_command_words]
        return splits[0] if len(splits) == 1 else [word]

    def correct(self, tokens: Sequence[str]) -> list[str]:
        corrected: list[str] = []
        for token in tokens:
            glued = self.split_glued(token)
            corrected += glued if len(glued) == 2 else [self.correct_word(token)]
        return corrected


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The words of pocketsphinx's pronouncing dictionary (empty when it is not installed)."""
    try:
        from .speech import _model_dictionary
        path = _model_dictionary()
    except ImportError:
        return frozenset()
    if not path.is_file():
        return frozenset()
    return frozenset(line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                     if line and not line.startswith(";") and "(" not in line.split(" ", 1)[0])


def join_spelled_letters(tokens: Sequence[str], known: frozenset[str] | set[str]) -> list[str]:
    """Runs of single letters that spell a known word become that word: a transcript's "i v c",
    "l u l", "g i tract"; "a p a view" is the article and PA. A run that spells nothing known
    ("i m") is left as it was."""
    out: list[str] = []
    index = 0
    while index < len(tokens):
        end = index
        while end < len(tokens) and len(tokens[end]) == 1 and tokens[end].isalpha():
            end += 1
        run = list(tokens[index:end])
        if len(run) >= 3 and run[0] in ("a", "i") and "".join(run[1:]) in known and "".join(run) not in known:
            out += [run[0], "".join(run[1:])]
            index = end
            continue
        for stop in range(end, index + 1, -1):          # the longest known spelling from here
            if "".join(tokens[index:stop]) in known:
                out.append("".join(tokens[index:stop]))
                index = stop
                break
        else:
            out.append(tokens[index])
            index += 1
    return out
