"""Self-corrections inside one utterance: "show me the left, no, right femur", "L4, sorry, L5",
"rotate twenty, no, thirty degrees left", "tilt cranial, um, caudal".

The words after a correction marker replace the last word of the same kind before it: a side,
a direction, a number, a structure, or the command's own verb ("zoom in, no, zoom out"). A
marker with nothing of the same kind on both sides is left alone, so talk ("no rush", "no,
don't") and negations keep their meaning. Works on the parser's normalised tokens (numbers as
digits, no punctuation); it knows nothing of intents.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

# said to take back the word before ("make that", "i mean"); several in a row count as one
CORRECTION_MARKERS = (("no",), ("sorry",), ("wait",), ("actually",), ("rather",), ("or", "rather"),
                      ("i", "mean"), ("make", "that"), ("correction",), ("oops",))
# a hesitation corrects only when the words either side of it are of one kind and differ
# ("tilt cranial, um, caudal"); elsewhere it is a pause
HESITATIONS = frozenset(("uh", "um", "er", "erm", "ehm"))
_LEADING = frozenset(("the", "a", "an", "to", "no", "sorry", "wait", "actually", "i", "mean"))
_SIDES = frozenset(("left", "right"))
_DIRECTIONS = frozenset(("up", "down", "cranial", "caudal", "in", "out"))
_VERBS = frozenset(("zoom", "rotate", "tilt", "move", "show", "collimate", "go", "pan", "angle"))
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# what may follow a lone replacement side: "the left one", "the left side"
_REFERRING = frozenset(("1", "one", "side", "please"))

FindStructure = Callable[[list[str]], "object | None"]     # the parser's span finder (.start, .end)


def _kind(token: str) -> str:
    if token in _SIDES:
        return "side"
    if token in _DIRECTIONS:
        return "direction"
    if _NUMBER.match(token):
        return "number"
    if token in _VERBS:
        return "verb:" + token
    return ""


def _marker_at(tokens: Sequence[str], index: int) -> int:
    """How many tokens of correction markers start at `index` (0 when none)."""
    length = 0
    while True:
        for marker in CORRECTION_MARKERS:
            if tuple(tokens[index + length:index + length + len(marker)]) == marker:
                length += len(marker)
                break
        else:
            return length


def _could_join(before: str, after: str) -> bool:
    """ "twenty, uh, five" may be twenty-five rather than a correction."""
    try:
        tens, units = float(before), float(after)
    except ValueError:
        return False
    return 20 <= tens < 100 and tens % 10 == 0 and 0 < units < 10


def _replace(before: list[str], after: list[str], find_structure: FindStructure, adjacent_only: bool
             ) -> list[str] | None:
    """`before` with its last word of the kind `after` starts with replaced by `after`; None
    when `before` has no word of that kind (or, for a hesitation, not right before it)."""
    content = list(after)
    while content and content[0] in _LEADING:
        content = content[1:]
    if not content:
        return None
    span_after = find_structure(content)
    if span_after is not None and span_after.start == 0 and not adjacent_only:
        span_before = find_structure(before)
        if span_before is not None:
            start = span_before.start
            # a side before the structure belongs to it ("the left femur, sorry, the right")
            if start > 0 and before[start - 1] in _SIDES:
                start -= 1
            return before[:start] + content
    kind = _kind(content[0])
    if not kind:
        return None
    candidates = [len(before) - 1] if adjacent_only else range(len(before) - 1, -1, -1)
    for index in candidates:
        # a verb is replaced by itself ("zoom in, no, zoom out"); anything else by a new value
        if _kind(before[index]) == kind and (kind.startswith("verb:") or before[index] != content[0]):
            if adjacent_only and kind == "number" and _could_join(before[index], content[0]):
                return None
            if len(content) == 1 or (len(content) == 2 and content[1] in _REFERRING):
                # "show the right hip, wait, the left one": the one word changes in place
                return before[:index] + [content[0]] + before[index + 1:]
            return before[:index] + content
    return None


def apply_corrections(tokens: Sequence[str], find_structure: FindStructure) -> list[str]:
    """`tokens` with every self-correction applied, left to right; unchanged when none applies."""
    tokens = list(tokens)
    index = 1
    while index < len(tokens):
        marker = _marker_at(tokens, index)
        hesitation = not marker and tokens[index] in HESITATIONS
        if marker or hesitation:
            skip = marker or 1
            corrected = _replace(tokens[:index], tokens[index + skip:], find_structure, adjacent_only=hesitation)
            if corrected is not None:
                tokens = corrected
                index = 1
                continue
        index += 1
    return tokens
