"""Command text normalisation: spoken numbers to digits, units split off, contractions opened.

Numbers are converted to digits so that one grammar handles "twenty degrees", "20 degrees" and
"20°", and so that spoken vertebral levels ("L three", "lumbar three") meet the vocabulary's
digit forms ("L3", "lumbar 3"). Ordinals ("fifth rib") are left as words: the vocabulary has
them.
"""

from __future__ import annotations

import re
import unicodedata

UNITS_WORDS = {"zero": 0, "oh": None, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
               "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
               "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
               "eighteen": 18, "nineteen": 19}
TENS_WORDS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
              "eighty": 80, "ninety": 90}
DIGIT_WORDS = {k: v for k, v in UNITS_WORDS.items() if v is not None and v < 10}
# The spoken and written forms of each unit (the parser's amounts; "half a centimetre" here).
UNIT_WORDS = {
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres", "mil", "mils", "millis"),
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres", "centi", "centis"),
    "deg": ("degree", "degrees", "deg", "degs", "grade", "grades"),      # "grade": Italian/Spanish speakers
    "inch": ("inch", "inches"),                                          # converted to mm by the parser
    "m": ("metre", "metres", "meter", "meters"),    # converted too: "2 metres" is 2000 mm, for the limits to refuse
}
_ANY_UNIT = frozenset(word for words in UNIT_WORDS.values() for word in words)
NUMBER_WORDS = {k for k, v in UNITS_WORDS.items() if v is not None} | set(TENS_WORDS) | {"hundred"}

CONTRACTIONS = {
    "don't": "do not", "dont": "do not", "doesn't": "does not", "didn't": "did not", "can't": "can not",
    "cannot": "can not", "won't": "will not", "what's": "what is", "where's": "where is",
    "which's": "which is", "that's": "that is", "it's": "it is", "let's": "let us", "i'd": "i would",
    "i'm": "i am", "we'd": "we would", "there's": "there is", "here's": "here is",
    "i've": "i have", "we've": "we have", "you've": "you have", "we're": "we are", "you're": "you are",
    "isn't": "is not", "aren't": "are not", "wasn't": "was not", "couldn't": "could not",
    "wouldn't": "would not", "shouldn't": "should not", "haven't": "have not",
    # typed or transcribed without the apostrophe
    "wheres": "where is", "whats": "what is", "thats": "that is", "theres": "there is", "doesnt": "does not",
    "didnt": "did not", "cant": "can not", "wont": "will not", "im": "i am",
}
_TOKEN = re.compile(r"\d+(?:st|nd|rd|th)\b|[a-z]+|\d+(?:\.\d+)?")   # "9th" stays one token


def _ascii_lower(text: str) -> str:
    text = text.replace("°", " degrees ").replace("º", " degrees ")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


def tokenize(text: str) -> list[str]:
    """Lower-case word and number tokens: contractions opened, "20mm" split, hyphens as spaces."""
    text = _ascii_lower(text).replace("\u2019", "'")
    for short, long in CONTRACTIONS.items():
        text = re.sub(rf"\b{re.escape(short)}\b", long, text)
    # a possessive is the word it marks ("the patient's left" is "the patients left"), not a word "s"
    text = re.sub(r"\b([a-z]+)'s\b", r"\1s", text)
    text = re.sub(r"(\d)(mm|cm|deg|degs|degrees|millimet(?:er|re)s?|centimet(?:er|re)s?)\b", r"\1 \2", text)
    text = text.replace("x-ray", "xray").replace("x ray", "xray")
    text = re.sub(r"\b(head|foot)-(wards?)\b", r"\1\2", text)     # "head-ward" is "headward"
    text = re.sub(r"(\d),(\d{1,2})(?!\d)", r"\1.\2", text)     # a decimal comma ("2,5 cm"), as most of Europe writes it
    # A decimal point must survive; every other punctuation mark becomes a space.
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    return _TOKEN.findall(text)


def _value(tokens: list[str]) -> float | None:
    """The value of a run of number words ("one hundred twenty five", "two point five")."""
    if "point" in tokens:
        i = tokens.index("point")
        whole = _value(tokens[:i]) if i else 0.0
        digits = [DIGIT_WORDS.get(t, 0 if t in ("zero", "oh") else None) for t in tokens[i + 1:]]
        if whole is None or not digits or any(d is None for d in digits):
            return None
        return whole + float("0." + "".join(str(d) for d in digits))
    total, current = 0, 0
    for token in tokens:
        if token in ("and", "a"):
            continue
        if token == "hundred":
            current = max(current, 1) * 100
        elif token in TENS_WORDS:
            current += TENS_WORDS[token]
        elif UNITS_WORDS.get(token) is not None:
            current += UNITS_WORDS[token]
        else:
            return None
    return float(total + current)


_FRACTIONS = {"a quarter": "0.25", "quarter": "0.25", "one quarter": "0.25", "three quarters": "0.75",
              "half": "0.5", "a half": "0.5"}
_FRACTION_OF_UNIT = re.compile(r"\b(a quarter|one quarter|three quarters|quarter|a half|half) of an? (?=(?:"
                               + "|".join(sorted(_ANY_UNIT, key=len, reverse=True)) + r")\b)")


def words_to_digits(tokens: list[str]) -> list[str]:
    """Replace runs of number words by one digit token: ["twenty", "five"] -> ["25"],
    ["two", "point", "five"] -> ["2.5"], ["a", "hundred"] -> ["100"], ["one", "and", "a",
    "half"] -> ["1.5"], ["half", "a", "cm"] -> ["0.5", "cm"], ["a", "cm"] -> ["1", "cm"]. Other
    tokens pass through. Fractions of a unit ("a quarter of a centimetre") become decimals."""
    tokens = _FRACTION_OF_UNIT.sub(lambda m: _FRACTIONS[m.group(1)] + " ", " ".join(tokens)).split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        run: list[str] = []
        while j < len(tokens):
            token = tokens[j]
            if token in NUMBER_WORDS or (token == "point" and run and j + 1 < len(tokens)
                                         and tokens[j + 1] in DIGIT_WORDS):
                run.append(token)
            elif token == "a" and j + 1 < len(tokens) and tokens[j + 1] == "hundred" and not run:
                run.append(token)
            elif token == "and" and run and j + 1 < len(tokens) and tokens[j + 1] in NUMBER_WORDS \
                    and "hundred" in run:
                run.append(token)
            else:
                break
            # "twenty five" joins; "five twenty" or "three four" does not: stop at a second
            # units word after a units word.
            if len(run) >= 2 and run[-2] in UNITS_WORDS and run[-1] in UNITS_WORDS and "point" not in run:
                run.pop()
                break
            j += 1
        value = _value(run) if run and run != ["a"] else None
        if value is None and _is_digits(tokens[i]) and tokens[i + 1:i + 4] == ["and", "a", "half"]:
            value, run = float(tokens[i]), [tokens[i]]          # "2 and a half cm"
        if value is None and tokens[i:i + 2] in (["half", "a"], ["half", "an"]) \
                and i + 2 < len(tokens) and tokens[i + 2] in _ANY_UNIT:
            value, run = 0.5, tokens[i:i + 2]                    # "half a centimetre"
        if value is None and tokens[i] in ("a", "an") and i + 1 < len(tokens) and tokens[i + 1] in _ANY_UNIT:
            value, run = 1.0, tokens[i:i + 1]                    # "a centimetre"
        if value is None:
            out.append(tokens[i])
            i += 1
            continue
        i += len(run)
        # "one and a half", "two and a half" ("one and half" as non-native speakers say it)
        if tokens[i:i + 3] == ["and", "a", "half"] or tokens[i:i + 2] == ["and", "half"]:
            value += 0.5
            i += 3 if tokens[i + 1] == "a" else 2
        # "a centimetre and a half"
        if i < len(tokens) and tokens[i] in _ANY_UNIT and tokens[i + 1:i + 4] == ["and", "a", "half"]:
            out += [f"{value + 0.5:g}", tokens[i]]
            i += 4
            continue
        out.append(f"{value:g}")
    return out


_DIGITS = re.compile(r"\d+(?:\.\d+)?")


def _is_digits(token: str) -> bool:
    return bool(_DIGITS.fullmatch(token))


def normalize_command(text: str) -> list[str]:
    """Tokens of a command with numbers as digits (see module docstring)."""
    return words_to_digits(tokenize(text))
