"""The typed result of understanding a command: `Intent` (mirrors `msg/Intent.msg`).

Kinds and their slots (empty string / NaN when not given):
- show(structure, view?)            centre and frame a structure, optionally in a named view; a view
                                    alone ("lateral view please", "LAO 45") keeps the current target
                                    (planner_node: the structure its last successful view showed).
                                    view: ap|pa|lateral|oblique_left|oblique_right|inlet|outlet|
                                    cranial|caudal; amount (unit "deg"): the tilt of cranial|caudal,
                                    the angle of an oblique, inlet or outlet ("LAO 45")
- collimate(structure | direction)  direction: open|tighter|wider
- move(direction, amount?, unit?)   direction: left|right|up|down|cranial|caudal|in|out; amount
                                    in millimetres (centimetres are converted), unit "mm"
- rotate(direction, amount?)        orbital rotation towards the patient's left|right, degrees
- tilt(direction, amount?)          angulation cranial|caudal, degrees
- zoom(direction)                   in|out
- acquire, undo, stop               no slots
- where(structure)                  segment and highlight only; never moves anything
- not_understood                    with the nearest candidates and the reason in `error`
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SHOW = "show"
COLLIMATE = "collimate"
MOVE = "move"
ROTATE = "rotate"
TILT = "tilt"
ZOOM = "zoom"
ACQUIRE = "acquire"
UNDO = "undo"
STOP = "stop"
WHERE = "where"
NOT_UNDERSTOOD = "not_understood"

KINDS = (SHOW, COLLIMATE, MOVE, ROTATE, TILT, ZOOM, ACQUIRE, UNDO, STOP, WHERE, NOT_UNDERSTOOD)
# Intents that move the C-arm or its collimator.
MOTION_KINDS = frozenset({SHOW, COLLIMATE, MOVE, ROTATE, TILT, ZOOM, UNDO})
# Intents with a physical effect: motion, or radiation (acquire). A misheard command must never
# produce one of these; the evaluation counts them on the negative set.
ACTION_KINDS = MOTION_KINDS | {ACQUIRE}

VIEWS = ("ap", "pa", "lateral", "oblique_left", "oblique_right", "inlet", "outlet", "cranial", "caudal")
MOVE_DIRECTIONS = ("left", "right", "up", "down", "cranial", "caudal", "in", "out")
ROTATE_DIRECTIONS = ("left", "right")
TILT_DIRECTIONS = ("cranial", "caudal")
ZOOM_DIRECTIONS = ("in", "out")
COLLIMATE_DIRECTIONS = ("open", "tighter", "wider")
SLOT_NAMES = ("structure", "view", "direction", "amount", "unit")


@dataclass(frozen=True)
class Intent:
    """A parsed request. `confidence` is in [0, 1]; `candidates` are the nearest readings (best
    first) when the request was not understood."""

    kind: str
    structure: str = ""
    view: str = ""
    direction: str = ""
    amount: float = math.nan
    unit: str = ""
    confidence: float = 0.0
    source_text: str = ""
    source: str = "text"
    candidates: tuple[str, ...] = ()
    error: str = ""
    method: str = "grammar"          # grammar|embedding|refused: how it was reached (diagnostics)
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown intent kind {self.kind!r}; expected one of {KINDS}")

    @property
    def moves(self) -> bool:
        """True when acting on it moves the C-arm or the collimator."""
        return self.kind in MOTION_KINDS

    @property
    def acts(self) -> bool:
        """True when acting on it moves something or fires the tube."""
        return self.kind in ACTION_KINDS

    @property
    def understood(self) -> bool:
        return self.kind != NOT_UNDERSTOOD

    def slots(self) -> dict[str, Any]:
        """The slot values that are set (amount rounded to 0.1 so comparisons are exact)."""
        values: dict[str, Any] = {}
        for name in SLOT_NAMES:
            value = getattr(self, name)
            if name == "amount":
                if not math.isnan(value):
                    values[name] = round(float(value), 1)
            elif value:
                values[name] = value
        return values

    def describe(self) -> str:
        """One line for logs and the /command/heard echo."""
        if self.kind == NOT_UNDERSTOOD:
            near = f"; did you mean: {', '.join(self.candidates[:3])}" if self.candidates else ""
            return f"not understood ({self.error or 'no match'}){near}"
        slots = " ".join(f"{k}={v}" for k, v in self.slots().items())
        # "centre on L2, then fluoro": the second request is said back, not done
        later = f"; not done: {self.details['not_done']} (say it next)" if self.details.get("not_done") else ""
        return f"{self.kind}({slots}) confidence {self.confidence:.2f}{later}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidates"] = list(self.candidates)
        data["amount"] = None if math.isnan(self.amount) else self.amount
        return data


def not_understood(text: str, error: str, candidates: tuple[str, ...] = (), confidence: float = 0.0,
                   source: str = "text", method: str = "refused") -> Intent:
    return Intent(NOT_UNDERSTOOD, confidence=confidence, source_text=text, source=source,
                  candidates=tuple(candidates), error=error, method=method)
