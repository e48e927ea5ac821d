"""Read-back confirmation: a spoken command the action gate held back is offered, and a "yes"
within a few seconds carries it out.

Why. The learned action gate (`action_gate.py`) must let no off-topic talk act, so it also holds
back commands it heard exactly but not surely (an N-best alternative read otherwise: "collimate
to the heart" / "... the halt"). Asking the surgeon to say the whole command again costs more
than a read-back: the recogniser says what it would do, and "yes" does it, "no" drops it. This
is how a radiographer answers an unclear request in the room, and how voice interfaces confirm
actions they are unsure of.

Safety:
- only a reading the gate held back is offered (`held_back` in the refusal's details, set by
  `speech.parse_recognition`); a reading refused for what it says (an unknown structure, a
  negation) never is;
- the offer lives for `timeout_s` and for ONE utterance: whatever is said next ends it, a stop
  included (the stop is carried out, the offer dropped);
- a reply counts only when the whole utterance is a reply ("yes", "correct", "no"); a spoken
  confirmation only when every likely alternative reads as one too (`spoken_reply`): "yes, I
  think so" or a "yes" misheard from talk does not confirm;
- a reply confirms the offer as it was read back; nothing else is guessed.

The core keeps the state; `command_node` feeds it every typed and spoken reading.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .intents import NOT_UNDERSTOOD, STOP, Intent, not_understood

CONFIRM = "confirm"
CANCEL = "cancel"
CONFIRM_PHRASES = ("yes", "yes please", "yeah", "yep", "yup", "confirm", "confirmed", "correct", "that's correct",
                   "that is correct", "that's right", "that is right", "affirmative", "do it", "yes do it",
                   "go ahead", "yes go ahead")
# "cancel" alone is a stop (the parser's reading wins; a stop also drops the offer)
CANCEL_PHRASES = ("no", "nope", "no thanks", "no thank you", "wrong", "that's wrong", "that is wrong", "negative",
                  "not that", "no no", "no no no", "don't do it", "do not do it")


def _words(text: str) -> list[str]:
    # the recogniser writes "that's" as "that s"; typed, either
    return re.sub(r"[^a-z ]+", " ", text.lower().replace("'", " ").replace("\u2019", " ")).split()


_REPLIES = {**{" ".join(_words(p)): CONFIRM for p in CONFIRM_PHRASES},
            **{" ".join(_words(p)): CANCEL for p in CANCEL_PHRASES}}
_EDGE_FILLERS = {"uh", "um", "er", "erm", "oh", "ah"}
# the share of the recogniser's N-best posterior that must read as the same reply
SPOKEN_REPLY_AGREEMENT = 0.99
HELD_BACK = "held_back"      # Intent.details key: the reading the gate would not act on


def reply_to(text: str) -> str:
    """CONFIRM, CANCEL or "" for an utterance that is (or is not) wholly a reply."""
    words = _words(text)
    while words and words[0] in _EDGE_FILLERS:
        words.pop(0)
    while words and words[-1] in _EDGE_FILLERS:
        words.pop()
    return _REPLIES.get(" ".join(words), "")


def spoken_reply(recognition: Any) -> str:
    """`reply_to` of what the recogniser heard; a confirmation only when the alternatives holding
    `SPOKEN_REPLY_AGREEMENT` of its N-best posterior read as one too ("" otherwise)."""
    if not getattr(recognition, "accepted", False):
        return ""
    reply = reply_to(recognition.text)
    if reply != CONFIRM:
        return reply        # a cancel only drops the offer (so does anything else said): no bar to pass
    details = getattr(recognition, "details", None) or {}
    alternatives: Sequence[str] = details.get("alternatives") or []
    scores = details.get("alternative_scores") or []
    if not alternatives or len(scores) < len(alternatives):
        return reply
    values = np.asarray(scores[:len(alternatives)], dtype=np.float64)
    posterior = np.exp(values - values.max())
    posterior /= posterior.sum()
    agreeing = sum(p for a, p in zip(alternatives, posterior) if reply_to(a) == reply)
    return reply if agreeing >= SPOKEN_REPLY_AGREEMENT else ""


@dataclass(frozen=True)
class ConfirmationConfig:
    # seconds a held-back reading may be confirmed; 0 turns read-back off
    timeout_s: float = 8.0


@dataclass(frozen=True)
class _Offer:
    intent: Intent
    at_s: float


class ReadBack:
    """The one open offer of a command session (thread-safe: text and speech arrive on
    different threads)."""

    def __init__(self, config: ConfirmationConfig | None = None) -> None:
        self.config = config or ConfirmationConfig()
        if not self.config.timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, got {self.config.timeout_s}")
        self._offer: _Offer | None = None
        self._lock = threading.Lock()

    @property
    def pending(self) -> Intent | None:
        with self._lock:
            return self._offer.intent if self._offer is not None else None

    def handle(self, intent: Intent, reply: str, now_s: float) -> Intent:
        """The intent to publish for one reading (`intent`) of an utterance whose reply is
        `reply` (`reply_to` / `spoken_reply`), said at `now_s` (monotonic seconds)."""
        with self._lock:
            offer, self._offer = self._offer, None
            if reply and intent.kind == NOT_UNDERSTOOD:
                return self._answer(offer, reply, intent, now_s)
            if intent.kind != STOP and self.config.timeout_s > 0 and isinstance(intent.details.get(HELD_BACK), Intent):
                self._offer = _Offer(intent.details[HELD_BACK], now_s)
                return replace(intent, error=f"{intent.error}; or say 'yes' within {self.config.timeout_s:g} s to "
                                             f"{intent.details[HELD_BACK].describe()}")
            return intent

    def _answer(self, offer: _Offer | None, reply: str, heard: Intent, now_s: float) -> Intent:
        text, source = heard.source_text, heard.source
        if offer is None:
            return not_understood(text, f"nothing to {'confirm' if reply == CONFIRM else 'cancel'}: "
                                        "say the command", source=source)
        if now_s - offer.at_s > self.config.timeout_s:
            return not_understood(text, f"the offer to {offer.intent.describe()} expired after "
                                        f"{self.config.timeout_s:g} s: say the command again", source=source)
        if reply == CANCEL:
            return not_understood(text, f"cancelled: {offer.intent.describe()} not done", source=source)
        return replace(offer.intent, method="confirmed",
                       details={**offer.intent.details, "confirmed_by": text, "confirmed_after_s": now_s - offer.at_s})
