"""What the acoustic model writes: lower-case letters, apostrophe and space (plus CTC's blank).

Training text is turned into the words a speaker says: digits become number words and level
abbreviations are spelled ("L3" -> "l three", "T12" -> "t twelve"), which the text parser reads
back. Everything else (punctuation, symbols) is dropped.
"""

from __future__ import annotations

import re

import torch

from ..numbers import TENS_WORDS, UNITS_WORDS

BLANK = "_"
ALPHABET = BLANK + " 'abcdefghijklmnopqrstuvwxyz"
INDEX = {c: i for i, c in enumerate(ALPHABET)}
_UNITS = {v: k for k, v in UNITS_WORDS.items() if v is not None}
_TENS = {v: k for k, v in TENS_WORDS.items()}
_LETTERS_DIGITS = re.compile(r"^([a-z]{1,2})(\d{1,2})$")


def number_words(value: int) -> str:
    """0..999 as English words ("one hundred twenty five")."""
    if not 0 <= value < 1000:
        raise ValueError(f"number out of range: {value}")
    if value < 20:
        return _UNITS[value]
    if value < 100:
        tens, units = divmod(value, 10)
        return _TENS[tens * 10] + (f" {_UNITS[units]}" if units else "")
    hundreds, rest = divmod(value, 100)
    return f"{_UNITS[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def _spoken_token(token: str) -> str:
    if token.isdigit():
        return number_words(int(token))
    if re.fullmatch(r"\d+\.\d+", token):
        whole, fraction = token.split(".")
        return f"{number_words(int(whole))} point " + " ".join(_UNITS[int(d)] for d in fraction)
    match = _LETTERS_DIGITS.match(token)
    if match:
        return " ".join(match.group(1)) + " " + number_words(int(match.group(2)))
    return token


def spoken_transcript(text: str) -> str:
    """The words of `text` as spoken, in the model's alphabet."""
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    tokens = re.findall(r"[a-z']+\d*|\d+(?:\.\d+)?", text)
    spoken = " ".join(_spoken_token(t) for t in tokens)
    return re.sub(r"\s+", " ", "".join(c for c in spoken if c in INDEX and c != BLANK)).strip()


def encode(text: str) -> torch.Tensor:
    """Label indices of a transcript (already in the alphabet)."""
    unknown = sorted({c for c in text if c not in INDEX or c == BLANK})
    if unknown:
        raise ValueError(f"characters outside the alphabet: {unknown}")
    return torch.tensor([INDEX[c] for c in text], dtype=torch.long)


def collapse(indices) -> str:
    """CTC's best-path reading: repeats merged, blanks removed, spaces tidied."""
    out, previous = [], -1
    for index in indices:
        index = int(index)
        if index != previous and index != 0:
            out.append(ALPHABET[index])
        previous = index
    return re.sub(r"\s+", " ", "".join(out)).strip()
