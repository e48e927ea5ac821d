"""Pronunciations (CMU ARPAbet) for words pocketsphinx's dictionary lacks.

Medical words ("collimate", "iliopsoas", "brachiocephalic") are not in cmudict, and a JSGF
grammar with an unknown word fails to load. In order of preference:
1. the recogniser's own dictionary;
2. letters + a number ("l3", "th12", "c7"): spelled letters then the number word;
3. abbreviations (no vowel, or declared as such, up to 5 letters): spelled letter by letter;
4. espeak-ng's own letter-to-sound rules (en-us, `--ipa=3`) mapped from IPA to ARPAbet (on 150
   random cmudict words of 7+ letters: 43% identical, 89% of phones matching). Splitting
   compounds into two dictionary words was tried and dropped: it read "collimate" as "colli mate".
"""

from __future__ import annotations

import functools
import re
import subprocess
from typing import Callable

from .vocabulary import CARDINALS

Lookup = Callable[[str], "str | None"]

LETTERS = {"a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
           "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
           "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
           "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY"}
# IPA (espeak-ng, en-us) -> ARPAbet; longest symbols are tried first.
IPA = {
    "eɪ": "EY", "aɪ": "AY", "ɔɪ": "OY", "aʊ": "AW", "oʊ": "OW", "əʊ": "OW", "tʃ": "CH", "dʒ": "JH",
    "ɑː": "AA", "ɔː": "AO", "uː": "UW", "iː": "IY", "ɜː": "ER", "ɪə": "IY AH", "eə": "EH R",
    "ʊə": "UH R", "ɑ": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ᵻ": "IH", "ɪ": "IH",
    "i": "IY", "ɛ": "EH", "e": "EH", "ɔ": "AO", "ʊ": "UH", "u": "UW", "ɜ": "ER", "ɚ": "ER",
    "ɝ": "ER", "ɒ": "AA", "o": "OW", "a": "AA", "p": "P", "b": "B", "t": "T", "d": "D", "k": "K",
    "ɡ": "G", "g": "G", "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH",
    "ʒ": "ZH", "h": "HH", "m": "M", "n": "N", "ŋ": "NG", "l": "L", "ɹ": "R", "r": "R", "w": "W",
    "j": "Y", "ɾ": "T", "x": "K", "ɬ": "L",
}
_IGNORED = set("ˈˌː\u200d\u0329ʔ-. ")   # stress, length, joiner, syllabic mark, glottal stop


@functools.lru_cache(maxsize=4096)
def espeak_ipa(word: str) -> str:
    result = subprocess.run(["espeak-ng", "-v", "en-us", "-q", "--ipa=3", word], capture_output=True,
                            timeout=10, check=True)
    return result.stdout.decode("utf-8").strip()


def ipa_to_arpabet(ipa: str) -> str:
    """IPA from espeak-ng to a space-separated ARPAbet string; unknown symbols are dropped."""
    # espeak joins the parts of one phoneme with U+200D; keep them together, drop the marks
    text = ipa.replace("\u200d", "")
    phones: list[str] = []
    i = 0
    symbols = sorted(IPA, key=len, reverse=True)
    while i < len(text):
        if text[i] in _IGNORED:
            i += 1
            continue
        for symbol in symbols:
            if text.startswith(symbol, i):
                phones.extend(IPA[symbol].split())
                i += len(symbol)
                # a length mark after a matched short vowel is already implied
                break
        else:
            i += 1
    # "ɹɹ" and repeated phones from espeak's linking collapse to one
    return " ".join(p for k, p in enumerate(phones) if k == 0 or p != phones[k - 1])


def spell(letters: str) -> str:
    return " ".join(LETTERS[c] for c in letters)


def pronounce(word: str, lookup: Lookup, abbreviation: bool = False, use_espeak: bool = True) -> str | None:
    """ARPAbet pronunciation of `word` (lower case), or None if none can be made."""
    if not abbreviation:
        known = lookup(word)
        if known:
            return known
    match = re.fullmatch(r"([a-z]{1,2})(\d{1,2})", word)
    if match and 1 <= int(match.group(2)) <= len(CARDINALS):
        number = lookup(CARDINALS[int(match.group(2)) - 1])
        letters = "t" if match.group(1) == "th" else match.group(1)   # "Th12" is said "T twelve"
        return f"{spell(letters)} {number}" if number else None
    if not word.isalpha():
        return None
    if abbreviation or (len(word) <= 5 and not re.search(r"[aeiouy]", word)):
        return spell(word)
    if use_espeak:
        try:
            phones = ipa_to_arpabet(espeak_ipa(word))
        except (OSError, subprocess.SubprocessError):
            return None
        return phones or None
    return None
