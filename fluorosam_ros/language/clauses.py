"""One request among typed clauses of talk: "the cement is going in now, so give me a lateral of
T11", "for the students watching, highlight the right kidney", "I can't see the endplates, tilt
caudal 15 degrees please".

The parser reads an utterance whole, and words it cannot place cost confidence, so a request
wrapped in explanation was refused. Typed text marks its clauses (commas, semicolons, colons,
full stops, "so"), and a careful reader takes the one clause that is a request. This module does
the splitting and the checks; the parser reads each clause.

Only when it is safe:
- typed text only (a transcript has no punctuation);
- used only when the whole utterance was not understood;
- exactly one clause reads as a request, every other reads as nothing;
- the request clause is read fully (confidence 1: every word placed; "that's a nice AP of the
  pelvis" leaves "nice" and is a comment, not a request);
- no other clause holds a command word ("out a bit, zoom" is one request in two clauses) or a word
  that could change what the request means: a negation ("not yet,
  take a shot"), a condition or time ("if", "when", "before", "later"), reported or wished
  speech ("he said", "she wants"), a modal or a tense other than now ("would", "will", "was").
  "I can't see ..." is the one negation let through: it gives the reason for the request.
"""

from __future__ import annotations

import re

from .numbers import normalize_command

_BOUNDARY = re.compile(r"[,;:!?\u2014\u2013]+|(?<!\d)\.(?!\d)|\s-\s|\bso\b", re.IGNORECASE)
_REASON = re.compile(r"\b(?:i|we) can not (?:see|tell|find)\b")
# "shoot, I dropped the wire": an event at another time than the request (past, or yet to come):
# the request-like word was an exclamation, or the request is for later
_OTHER_TIME = re.compile(r"\b(?:i|we|you|he|she|they|it|someone|somebody) (?:just |already )?[a-z]+ed\b"
                         r"|\bgoing to\b")
# words in another clause that may change the meaning of the request (normalised tokens)
CHANGES_MEANING = frozenset((
    "not", "no", "never", "nothing", "wait", "hold", "yet", "stop", "cancel", "undo",
    "if", "when", "whenever", "once", "before", "after", "until", "unless", "later", "tomorrow", "yesterday",
    "next", "then", "earlier", "soon",
    "said", "says", "say", "asked", "asks", "told", "tell", "wants", "wanted", "want", "wish", "suggested",
    "would", "could", "should", "might", "may", "must", "will", "shall", "gonna",
    "was", "were", "had", "did", "done", "been", "used",
    "maybe", "perhaps", "probably", "think", "thought", "guess", "wonder", "ll", "d",
))


# a command word in another clause: that clause is part of the request ("out a bit, zoom"), not talk
COMMAND_WORDS = frozenset((
    "zoom", "move", "rotate", "tilt", "collimate", "cone", "shoot", "fire", "acquire", "show", "pan", "shift",
    "nudge", "orbit", "angle", "centre", "center", "magnify", "lao", "rao", "ap", "pa", "lateral", "inlet",
    "outlet", "oblique", "highlight", "outline", "image", "fluoro", "xray", "shot",
))


def split_clauses(text: str) -> list[str]:
    """The clauses of typed `text` at punctuation and 'so' (non-empty, stripped)."""
    return [clause.strip() for clause in _BOUNDARY.split(text) if clause and clause.strip()]


def changes_meaning(clause: str) -> bool:
    """Whether `clause` holds a word that could change a request said beside it."""
    said = _REASON.sub(" ", " ".join(normalize_command(clause)))
    return bool(_OTHER_TIME.search(said)) or any(token in CHANGES_MEANING or token in COMMAND_WORDS
                                                 for token in said.split())


def may_stand_alone(clauses: list[str], index: int) -> bool:
    """A one-word request ("shoot", "fire") only as the last clause: first, it is an exclamation."""
    return index == len(clauses) - 1 or len(normalize_command(clauses[index])) > 1
