"""Levels named relative to another: "one level up from L4" (L3), "the vertebra just below T12"
(L1), "two levels above L1" (T11), "the rib under the left 5th" (left 6th rib).

Spine and chest teams count levels this way. The rewrite puts the level it means in place of the
phrase, so the parser reads "show one level up from L4" as "show l3". Up, above and higher are
towards the head: a smaller rib number, and for vertebrae the order C1..C7, T1..T12, L1..L5, S1
across the regions. A phrase without an anchor level ("go up a level": from the current target,
which only the planner knows) or past the ends of the column ("the level above C1") is left as
it is, and the parser refuses it.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from .vocabulary import RIB_REGION, VERTEBRAL_REGIONS, Vocabulary, ordinal_number

_RELATIVE = re.compile(
    r"\b(?:(?P<count>\d+|a|an|the)\s+)?(?P<unit>levels?|vertebrae|vertebra|segments?|ribs?)\s+"
    r"(?:just\s+|right\s+|directly\s+|immediately\s+)?(?P<direction>up|above|higher|down|below|under|beneath|lower)"
    r"(?:\s+(?:from|than|to))?\s+(?P<rest>.+)$")
_TOWARDS_HEAD = frozenset(("up", "above", "higher"))
# "go up a level", "one level down": from the current target, which the parser cannot know
UNANCHORED = re.compile(r"\b(?:(?:up|down|higher|lower) (?:a|an|\d+) (?:levels?|vertebrae|vertebra|segments?)|"
                        r"(?:a|an|\d+) (?:levels?|vertebrae|vertebra|segments?) (?:up|down|higher|lower)|"
                        r"(?:next|previous) (?:level|vertebra|segment) (?:up|down))\b")

FindStructure = Callable[[list[str]], Optional[object]]     # the parser's span finder (.name, .start, .end)


class RelativeLevels:
    """Rewrites relative level phrases of one vocabulary (see the module docstring)."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        regions = list(VERTEBRAL_REGIONS)
        numbered = [(name, vocabulary.entry(name).numbering) for name in vocabulary.names()]
        self.column = [name for name, n in sorted(((name, n) for name, n in numbered
                                                   if n is not None and n.region in VERTEBRAL_REGIONS),
                                                  key=lambda item: (regions.index(item[1].region), item[1].index))]
        self.ribs = {(vocabulary.entry(name).laterality, n.index): name for name, n in numbered
                     if n is not None and n.region == RIB_REGION}

    def rewrite(self, joined: str, find_structure: FindStructure) -> str:
        """`joined` (the parser's normalised tokens, space-joined) with a relative level phrase
        replaced by the level it names; unchanged when there is none it can place."""
        match = _RELATIVE.search(joined)
        if match is None:
            return joined
        unit = match.group("unit")
        rest = match.group("rest").split()
        anchor = self._anchor(rest, find_structure, rib=unit.startswith("rib"))
        if anchor is None:
            return joined
        name, end = anchor
        count = int(match.group("count")) if (match.group("count") or "").isdigit() else 1
        steps = -count if match.group("direction") in _TOWARDS_HEAD else count
        target = self._step(name, steps)
        if target is None:
            return joined
        return f"{joined[:match.start()]}{target} {' '.join(rest[end:])}".strip()

    def _anchor(self, rest: list[str], find_structure: FindStructure, rib: bool) -> tuple[str, int] | None:
        """(the numbered structure that `rest` starts with, the tokens it takes), else None;
        'the left 5th' after 'rib' is the left 5th rib."""
        for tokens, taken in ((rest, None), (rest + ["rib"], len(rest)) if rib else (rest, None)):
            span = find_structure(tokens)
            if span is not None and span.start <= 1 and (span.start == 0 or tokens[0] == "the") and \
                    self.vocabulary.entry(span.name).numbering is not None:
                return span.name, min(span.end, taken if taken is not None else span.end)
        return None

    def _step(self, name: str, steps: int) -> str | None:
        """The spoken name of the level `steps` below `name` (negative: above), or None."""
        numbering = self.vocabulary.entry(name).numbering
        if numbering.region == RIB_REGION:
            side = self.vocabulary.entry(name).laterality
            target = self.ribs.get((side, numbering.index + steps))
            return None if target is None else f"{side} {ordinal_number(numbering.index + steps)} rib"
        position = self.column.index(name) + steps
        if not 0 <= position < len(self.column):
            return None
        return self.vocabulary.entry(self.column[position]).numbering.level.lower()
