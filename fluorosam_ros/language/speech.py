"""Offline speech recognition for commands: pocketsphinx with a language model of our commands,
built from the same vocabulary and phrase lists the text parser uses, plus a gate on actions.

Search. The default search is a trigram model (`lm.py`) of a seeded corpus drawn from
`corpus_rules` (the parser's phrase lists and every spoken form of the anatomy vocabulary;
never the evaluation set). Its best word string goes through the same parser as typed text.
The first design, a strict JSGF grammar (`build_grammar`, search="grammar"), is kept for
comparison: on noisy synthetic speech its paths often ended partially ("stop" -> "stop the"),
it took seconds per utterance, and it was less exact (README, issue 5).

Gate. The acoustic model fits espeak-ng's synthetic voices poorly, so a decoded string is often
wrong; an intent that moves the C-arm or fires must therefore pass (see `parse_recognition`):
- an acoustic fit per speech frame (pocketsphinx scores each frame against its best senone, so
  a path's score is already relative to an unconstrained phone sequence) of `motion_gap`;
- the parser's confidence `motion_confidence` (no unexplained words);
- agreement: `motion_agreement` of the N-best word strings read as the same intent and slots.
(Those hand thresholds remain the fallback; the CTC engine's default gate is learned from the
same kind of measurements: `action_gate.py`.)
Utterances whose fit is below `reject_gap` are not accepted at all. Stop and where are never
gated beyond that: stopping on a misheard word is safe. A comparison against a free phone
loop (allphone search), the first rejection design, gave no usable score: its path scores
are normalised the same way and came out ~0 for every utterance.

Audio with exact digital silence (synthetic speech) breaks pocketsphinx's noise estimate and
CMN (we measured "show me the left femur" -> "show the"); dithering (seeded, so results
repeat) avoids it, as a real microphone's noise floor would.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import parser as P
from .confirmation import CANCEL_PHRASES, CONFIRM_PHRASES
from .numbers import TENS_WORDS, UNITS_WORDS
from .pronounce import pronounce
from .vocabulary import CARDINALS, Vocabulary, default_vocabulary, normalize

if TYPE_CHECKING:
    from .action_gate import ActionGate

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
UNITS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


@dataclass(frozen=True)
class SpeechConfig:
    sample_rate_hz: int = SAMPLE_RATE
    # Acoustic fit of the decoded words (nat per speech frame, <= 0; see SpeechRecognizer._fit),
    # thresholds tuned on eval/tuning.yaml (`fluorosam evaluate-language --tune`), not on the
    # evaluation set.
    reject_gap: float = -6.0          # below: nothing is accepted (not speech we can read at all)
    motion_gap: float = -4.5          # an intent that moves or fires needs at least this fit
    reject_enabled: bool = True
    dither_seed: int = 7
    noise_floor: float = 100.0        # audio quieter than this (RMS, LSB) between words is topped up
    max_utterance_s: float = 15.0
    include_questions: bool = True   # description questions ("which bone is in the left thigh")
    max_structure_forms: int = 0     # grammar search: 0 = all the vocabulary's forms
    search: str = "lm"               # "lm": command n-gram model; "grammar": the strict JSGF grammar
    language_weight: float = 15.0    # pocketsphinx -lw (its default 6.5 trusts the acoustics more)
    lm_sentences: int = 40000        # corpus size drawn from corpus_rules
    lm_order: int = 3
    lm_seed: int = 0
    lm_optional_p: float = 0.4       # how often the corpus takes an optional word ("[please]")
    background_words: int = 0        # frequent English words in the model, for off-topic speech
    background_mass: float = 0.0     # their share of the unigram probability
    nbest: int = 10                  # N-best word strings kept in Recognition.details["alternatives"]
    motion_agreement: float = 0.7    # share of the N-best that must read as the same action ...
    clear_gap: float = -3.5          # ... unless the fit is at least this good
    word_gap: float = -1e9           # ... and its worst word must fit this well (engines that measure it: ctc)
    motion_confidence: float = 0.9   # parser confidence an action from speech needs
    remove_noise: bool = True        # pocketsphinx's spectral noise removal
    cmn: str = "batch"               # cepstral mean normalisation over the whole utterance
    frequency_warp: float = 1.0      # vocal tract length normalisation (inverse linear warp); 1 = none
    decoder_options: str = ""        # more pocketsphinx options, "name=value,name=value" (e.g. "topn=8")
    # Our front end on the PCM before pocketsphinx (`denoise.py`; measurements there), each stage on its own:
    hum_notch: bool = False          # find mains hum (50 / 60 Hz + harmonics) and notch it (no gain measured)
    denoise: bool = False            # Wiener-type spectral gain, noise estimated from the quiet frames,
                                     # skipped in unsteady noise (babble). Off: +8 points at 10 dB steady
                                     # noise but -10 at 20 dB (denoise.py)
    denoise_floor_db: float = -12.0  # its lowest gain
    denoise_oversubtract: float = 1.0
    denoise_max_unsteadiness_db: float = 1.7   # the gain is skipped when the noise is less steady
    cache: bool = True               # keep the built model in ~/.cache/fluorosam_ros/asr
    # The engine: "ctc" (our acoustic model, acoustic/, trained on synthetic speech; default) or
    # "pocketsphinx" (its en-US model with the command language model above).
    engine: str = "ctc"
    ctc_weights: str = ""            # "" = the bundled weights/command_asr.pt
    ctc_beam: int = 12
    # shallow fusion of the command word model (acoustic/decoder.py); chosen on the tuning split
    # by the right readings the refitted gate lets act (session 15: 0.6 / 0.7 485 of 510, 0.8 / 1.0 440)
    ctc_lm_weight: float = 0.6
    ctc_word_bonus: float = 0.7
    ctc_oov_probability: float = 1e-6
    # the gate of the CTC engine (acoustic/recognizer.py): fits in ln against the acoustics' own
    # best path, per output step (~0 for a clear command) and for the worst word; chosen by
    # `fluorosam evaluate-language --tune` on eval/tuning.yaml (0 actions on its 192 off-topic
    # utterances), like pocketsphinx's
    ctc_reject_gap: float = -1.0     # loose: only what is not speech at all (stop and where pass the rest)
    ctc_motion_gap: float = -0.03
    ctc_motion_agreement: float = 0.6
    ctc_clear_gap: float = 0.05
    ctc_word_gap: float = -3.0
    # the learned gate (action_gate.py) that replaces the five thresholds above for actions:
    # "" = the bundled weights/command_gate.json, "off" = the thresholds; a gate fitted to
    # other acoustic weights is refused (logged) and the thresholds are used
    ctc_action_gate: str = ""


@dataclass
class Recognition:
    """What the recogniser heard. `text` is "" when nothing was accepted."""

    text: str
    accepted: bool
    raw_text: str = ""
    gap: float = math.nan            # acoustic fit of the best path, nat per speech frame (<= 0)
    frames: int = 0
    decode_ms: float = 0.0
    reason: str = ""
    details: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# The grammar
# ------------------------------------------------------------------------------------------

def _spoken(text: str) -> str:
    """A surface form as the recogniser should output it: normalised, digits as level tokens
    ("rib 5 left" -> "rib five left"; "l3" stays one token with a spelled pronunciation)."""
    words = []
    for word in normalize(text).split():
        if word.isdigit():
            index = int(word)
            if not 1 <= index <= len(CARDINALS):
                return ""
            word = CARDINALS[index - 1]
        words.append(word)
    return " ".join(words)


def _alternatives(phrases) -> str:
    unique = sorted({p for p in phrases if p})
    return " | ".join(unique) if unique else "<VOID>"


# The phrasings people say; the written-only ones ("9th", "vertebra L3", the canonical ids) and
# the rarer laterality word orders are left out of the speech grammar to keep it small (its
# compile time grows with it); the text parser still reads them all.
# Measured: with ~900 phrases, decoding was slower and less exact than with the ~450 below.
SPOKEN_NUMBERED = {"numbered:abbr", "numbered:ordinal", "numbered:region_word"}
SPOKEN_VARIANTS = {"plain", "prefix"}
SPOKEN_SOURCES = {"display", "base", "lay", "abbreviation", "numbered", "plural"}


def structure_phrases(vocabulary: Vocabulary, limit: int = 0) -> dict[str, str]:
    """Spoken phrase -> the source of its surface form, for the forms people say."""
    phrases: dict[str, str] = {}
    for name in vocabulary.names():
        forms = [f for f in vocabulary.forms(name) if f.source in SPOKEN_SOURCES and f.variant in SPOKEN_VARIANTS
                 and (f.source != "numbered" or f.origin in SPOKEN_NUMBERED)]
        if limit:
            forms = forms[:limit]
        for form in forms:
            spoken = _spoken(form.text)
            # "9th" (ordinal digits) is written, not said: the word forms cover it
            if spoken and re.fullmatch(r"[a-z0-9 ]+", spoken) and not re.search(r"\d(st|nd|rd|th)\b", spoken):
                phrases.setdefault(spoken, form.source)
    return phrases


def question_phrases(vocabulary: Vocabulary) -> list[str]:
    """'which bone is in the left thigh' from 'the bone in the left thigh' (+ clues)."""
    phrases = []
    for name in vocabulary.names():
        entry = vocabulary.entry(name)
        for text in (entry.description,) + tuple(entry.clues):
            words = normalize(text).split()
            if len(words) < 2:
                continue
            noun, predicate = words[0], " ".join(words[1:])
            verb = "are" if noun.endswith("s") and not noun.endswith("ss") else "is"
            phrases += [f"{noun} {verb} {predicate}", f"{noun} {predicate}"]
    return phrases


AMOUNT_RULE = "<number> (millimeters | millimeter | mm | centimeters | centimeter | cm)"


def command_rules(vocabulary: Vocabulary | None = None, config: SpeechConfig | None = None
                  ) -> tuple[str, dict[str, str]]:
    """(public expansion, rules) of the strict command grammar, in JSGF syntax."""
    vocabulary = vocabulary or default_vocabulary()
    config = config or SpeechConfig()
    structures = structure_phrases(vocabulary, config.max_structure_forms)
    # <structure> is referenced ONCE: pocketsphinx expands every reference into its own copy
    # of the finite-state graph, and five copies of ~1,700 phrases took minutes to compile.
    amount = AMOUNT_RULE
    rules = {
        "polite": "please | can you | could you | okay | let us | i would like to | i want to",
        "digit": " | ".join(UNITS),
        "number": "(" + " | ".join(UNITS + TEENS) + " | (" + " | ".join(TENS) + ") [<digit>]) [point <digit>]",
        "structure": _alternatives(structures),
        "verb": "show | show me | show me the | show the | center on | center on the | go to | go to the | "
                "move to the | give me the | get me the | let me see the | look at the | focus on the | "
                "bring up the | take an image of the | take a picture of the | image the | "
                "where is | where is the | where are the | find the | locate the | highlight the | "
                "segment the | outline the | identify the | is this the | is that the | "
                "collimate on | collimate on the | collimate to the | cone down on the",
        "view": "[in] [the] (ap | pa | lateral | inlet | outlet | left oblique | right oblique | lao | rao | "
                "frontal) [view | projection] | [with] [a] <number> degree (cranial | caudal) tilt | "
                "(cranial | caudal) tilt",
        "direction": "left | right | up | down | cranial | caudal | in | out | cranially | caudally | "
                     "to the left | to the right | toward the head | towards the head | toward the feet | "
                     "towards the feet",
        "stop": "stop | halt | freeze | abort | hold still | hold it | hold on | do not move | "
                "stop stop | stop now | emergency stop | stop moving | stop the arm",
        # no bare "<structure>": off-topic speech forced into the grammar most easily became one
        "with_structure": "<verb> <structure> [<view>]",
        "view_only": "[give me] [a | an] (ap | pa | lateral | inlet | outlet | left oblique | right oblique | "
                     "lao | rao) [view]",
        "move": f"(move | shift | go | pan | nudge) [the arm] <direction> [{amount}] | "
                f"(move | shift) {amount} <direction>",
        "rotate": "(rotate | orbit | swing) [the arm] [to the] (left | right | lao | rao) [<number> degrees] | "
                  "rotate <number> degrees [to the] (left | right)",
        "tilt": "(tilt | angle) [the arm] (cranial | caudal | cranially | caudally | toward the head | "
                "towards the head | toward the feet | towards the feet) [<number> degrees] | "
                "tilt <number> degrees (cranial | caudal)",
        "zoom": "zoom (in | out) | magnify",
        "collimate": "collimate (tighter | wider) | cone down | cone in | open [up] the (collimator | collimators | "
                     "collimation) | (tighter | wider) collimation | open collimation",
        "acquire": "take a (shot | picture | image) | take an (image | xray) | shoot | acquire [an image] | "
                   "fluoro | take one | expose | new image",
        "undo": "undo [that] | go back | back to the previous (view | position) | previous view | "
                "return to the last position",
    }
    public = "<stop> | [<polite>] (<with_structure> | <view_only> | <move> | <rotate> | <tilt> | <zoom> | " \
             "<collimate> | <acquire> | <undo>) [please]"
    return public, rules


def build_grammar(vocabulary: Vocabulary | None = None, config: SpeechConfig | None = None) -> str:
    """The JSGF command grammar, in the parser's words (P.*_PHRASES) and the vocabulary's."""
    public, rules = command_rules(vocabulary, config)
    lines = ["#JSGF V1.0;", "grammar commands;", f"public <command> = {public};"]
    lines += [f"<{name}> = {body};" for name, body in rules.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# The language model: a corpus drawn from a broad command grammar (the parser's phrase lists
# and the vocabulary's forms), counted into a trigram model by `lm.py`
# ------------------------------------------------------------------------------------------

# The forms people say, for the language model (size costs nothing here, unlike the JSGF):
# every laterality order but "left-sided", numbered forms except written ordinals ("3rd").
LM_SOURCES = {"display", "base", "synonym", "lay", "abbreviation", "numbered", "plural", "member_noun"}
LM_VARIANTS = {"plain", "prefix", "suffix", "on_the", "on_side"}
LM_WRITTEN_NUMBERED = {"numbered:ordnum", "numbered:ordnum_short", "numbered:ordnum_side",
                       "numbered:region_digit",   # "3rd lumbar"; "lumbar 3" = "lumbar three"
                       # the older dorsal names ("D12", "tenth dorsal vertebra"): read when typed; the
                       # acoustic model has not heard them
                       "numbered:abbr_d", "numbered:dorsal_ordinal", "numbered:dorsal_ordnum",
                       "numbered:dorsal_word", "numbered:dorsal_digit"}
# Where an entry's probability goes among its forms (the rest share weight 1 each).
LM_FORM_WEIGHTS = {"display": 3.0, "base": 2.0, "lay": 2.0, "abbreviation": 2.0, "plural": 1.5}


def lm_structure_phrases(vocabulary: Vocabulary) -> dict[str, float]:
    """Spoken phrase -> weight; every entry gets weight 1 in total, split among its forms."""
    weights: dict[str, float] = {}
    for name in vocabulary.names():
        forms = []
        for form in vocabulary.forms(name):
            if form.source not in LM_SOURCES or form.variant not in LM_VARIANTS or form.origin in LM_WRITTEN_NUMBERED:
                continue
            spoken = _spoken(form.text)
            if spoken and re.fullmatch(r"[a-z0-9 ]+", spoken) and not re.search(r"\d(st|nd|rd|th)\b", spoken):
                weight = LM_FORM_WEIGHTS.get(form.source, 1.0) * (1.0 if form.variant in ("plain", "prefix") else 0.5)
                forms.append((spoken, weight))
        total = sum(w for _, w in forms)
        for spoken, weight in forms:
            weights[spoken] = weights.get(spoken, 0.0) + weight / total
    return weights


def _weighted(phrases: dict[str, float]) -> str:
    return " | ".join(f"/{w:.4g}/ {p}" for p, w in sorted(phrases.items()) if w > 0)


def _spoken_list(phrases) -> str:
    """JSGF alternatives of parser phrases that can be said as words (no digits); not the
    phrases the speech side has not learnt yet (parser.TEXT_ONLY_PHRASES)."""
    return _alternatives(p for p in (_say(t) for t in phrases if t not in P.TEXT_ONLY_PHRASES) if p)


# Typed spellings in the parser's lists that nobody says ("stopp", "dont" without apostrophe,
# letter-spaced "a p"); the language model has the spoken words instead.
TYPED_ONLY = frozenset({"stopp", "dont", "lets", "c", "p", "a p", "p a", "xray now", "degs", "deg", "mils",
                        "millis", "centi", "centis", "lat"})


def _say(text: str) -> str:
    words = normalize(text).split()
    if not words or any(w.isdigit() for w in words) or " ".join(words) in TYPED_ONLY or \
            any(w in TYPED_ONLY and len(w) > 1 for w in words):
        return ""
    return " ".join(words)


def corpus_rules(vocabulary: Vocabulary | None = None) -> dict[str, str]:
    """The broad grammar the language model's corpus is drawn from (start rule: <sentence>).

    Built from the text parser's phrase lists (what it understands) and the vocabulary (every
    spoken form, the descriptions for questions), never from the evaluation set."""
    vocabulary = vocabulary or default_vocabulary()
    questions = sorted(set(question_phrases(vocabulary)))
    directions = [p for ps in P.DIRECTION_PHRASES.values() for p in ps]
    views = [p for ps in P.VIEW_PHRASES.values() for p in ps]
    examples = {kind.split(":")[0]: [] for kind in P.EXAMPLES}
    for kind, texts in P.EXAMPLES.items():
        examples[kind.split(":")[0]] += list(texts)
    tilt_dirs = P.DIRECTION_PHRASES["cranial"] + P.DIRECTION_PHRASES["caudal"]
    rules = {
        "sentence": "/6/ [<polite>] <show> [<trail>] | /3/ [<polite>] <where> [<trail>] | "
                    "/2.5/ [<polite>] <move> [<trail>] | /1.5/ [<polite>] <rotate> [<trail>] | "
                    "/1.2/ [<polite>] <tilt> [<trail>] | /1/ [<polite>] <zoom> [<trail>] | "
                    "/1.5/ [<polite>] <collimate> [<trail>] | /1.5/ [<polite>] <acquire> [<trail>] | "
                    "/1/ [<polite>] <undo> [<trail>] | /3/ <stop> | /1/ [<polite>] <view_only> [<trail>] | "
                    "/0.4/ <negated> | /0.8/ <reply>",
        "polite": "please | can you | could you | would you | will you | okay | ok | alright | now | so | and | "
                  "let us | let's | i would like to | i'd like to | i want to | i need to | can we | could we | "
                  "just | hey | can i | could i | um | uh",
        "trail": "please | now | for me | thanks | thank you | again | right now | real quick | quickly",
        "small": "a little | a bit | a little bit | slightly | a touch | just a touch | a tad | a little more | "
                 "more | further",
        "the": "/4/ the | /1/ <NULL>",
        "digit": " | ".join(UNITS),
        "number": "/6/ (" + " | ".join(UNITS + TEENS) + ") | /6/ (" + " | ".join(TENS) + ") [<digit>] | "
                  "/1/ (" + " | ".join(UNITS) + ") point <digit> | /1/ (one | two | three) and a half | "
                  "/0.5/ a hundred | /0.5/ one hundred [and] [<digit>]",
        "length_unit": "/3/ millimeters | /2/ mm | /1/ millimeter | /1/ millimetres | /1/ millimetre | "
                       "/0.5/ mil | /0.5/ mils | /3/ centimeters | /1.5/ cm | /1/ centimeter | /1/ centimetres | "
                       "/1/ centimetre",
        "amount": "<number> <length_unit>",
        "degrees": "[by] <number> [degrees | degree]",
        "structure": _weighted(lm_structure_phrases(vocabulary)),
        "modifier": "/6/ <NULL> | /1/ whole | /1/ entire | /0.5/ both",
        "target": "<the> <modifier> <structure>",
        "view_name": _spoken_list(views),
        "view": "/4/ [in] [the | a | an] <view_name> [view | projection] | "
                "/1/ [with] [a] <number> degree[s] (cranial | caudal) (tilt | angle | angulation) | "
                "/1/ (cranial | caudal) (tilt | angle | view) [of <number> degrees]",
        "show_verb": _spoken_list(P.SHOW_PHRASES + ("show me", "let me see", "i want to see", "i need to see",
                                                    "let us see", "let's see", "let us look at", "let's look at",
                                                    "have a look at", "can i see", "could i see", "get me over to",
                                                    "bring up", "take a look at", "xray", "zoom to")),
        "show": "/6/ <show_verb> <target> [<view>] | /1.5/ <show_verb> [a | an] <view_name> [view] of <target> | "
                "/1/ <target> [<view>] | /0.5/ <show_verb> <target> in [the] (middle | center | centre) | "
                "/0.5/ (bring | get | put) <target> (into view | in view | in the middle | in the center)",
        "where_verb": _spoken_list(P.WHERE_PHRASES + ("show me where", "where's", "point to", "can you find",
                                                      "can you see", "do you see", "is there")),
        "question_word": "which | what | what's | which is | what is | what are | which are",
        "where": "/4/ <where_verb> <target> | /1.5/ (is | are) (that | this | these | those) <target> | "
                 "/3/ <question_word> <the> <question> | /1/ where (is | are | 's) <target> [located]",
        "question": _alternatives(questions),
        "move_verb": _spoken_list(P.MOVE_WORDS) + " | move the table | move the arm | move the c arm | "
                                                  "go a bit | bring it",
        "direction": _spoken_list(directions),
        "move": "/4/ <move_verb> [<small>] <direction> [<amount>] [<small>] | /2/ <move_verb> <amount> <direction> | "
                "/1/ <move_verb> <direction> by <amount> | /0.5/ <move_verb> [the arm] <direction> <number>",
        "rotate_verb": "rotate | orbit | swing | turn | spin | roll | rotate the arm | rotate the c arm | "
                       "orbit the arm | swing the arm",
        "rotate": "/4/ <rotate_verb> [to the | towards the | toward the] (left | right | lao | rao) [<degrees>] | "
                  "/2/ <rotate_verb> <degrees> [to the] (left | right | lao | rao) | "
                  "/1/ (lao | rao) <number> [degrees] | "
                  "/1/ <rotate_verb> [into | to] (lao | rao) <number>",
        "tilt_verb": "tilt | angle | angulate | tip | tilt the arm | angle the arm | tilt the c arm | tilt the tube",
        "tilt_dir": _spoken_list(tilt_dirs),
        "tilt": "/4/ <tilt_verb> [<small>] <tilt_dir> [<degrees>] | /2/ <tilt_verb> <degrees> <tilt_dir> | "
                "/1/ <tilt_verb> <tilt_dir> by <number> degrees",
        "zoom": "/3/ zoom (in | out) [<small>] | /1/ zoom (closer | back out) | " +
                _spoken_list(P.ZOOM_IN + P.ZOOM_OUT + tuple(examples["zoom"])),
        "collimate": "/3/ (collimate | collimation | cone) "
                     "(tighter | wider | in | out | down | more | less | narrower) | "
                     "/1/ cone down [more] | /2/ (open | remove | widen | narrow | tighten | close) [up] [the] "
                     "(collimator | collimators | collimation | shutters | field) | "
                     "/1/ (tighter | wider) collimation | "
                     "/0.5/ open collimation | /0.5/ full field [of view] | "
                     "/3/ (collimate | cone down) [on | to | around | onto | in on] <target> | " +
                     _spoken_list(examples["collimate"]),
        "acquire": "/4/ " + _spoken_list(P.ACQUIRE_PHRASES + tuple(examples["acquire"])).replace(" | ", " | /4/ ") +
                   " | /1/ take a [new] (shot | picture | image | film | xray) now | /1/ (shoot | fire | expose) now",
        "undo": _spoken_list(P.UNDO_PHRASES + tuple(examples["undo"]) + ("go back", "undo that", "undo the last move",
                                                                        "go back to the previous view")),
        # stop is the command that matters most and is mostly said bare: "stop" and its common
        # forms carry most of the rule's probability (a uniform choice gave bare "stop" 4 %)
        "stop": "/8/ stop | /2/ stop stop | /1/ stop stop stop | /1.5/ stop now | /1/ stop moving | /1/ halt | "
                "/1/ freeze | /1/ abort | /1/ hold still | /0.5/ hold it | /0.5/ hold on | /1/ don't move | "
                "/1/ do not move | /0.5/ emergency stop | /0.5/ stop the arm | /0.5/ stop everything | "
                "/0.5/ stop right there | /0.5/ please stop | /0.5/ wait stop | /0.3/ " +
                _spoken_list(P.STOP_PHRASES).replace(" | ", " | /0.3/ "),
        "view_only": "[give me | i want | i need | let's get | switch to | go to] [a | an] <view_name> "
                     "[view | projection]",
        # the answers to a read-back (confirmation.py): said alone, right after an offer
        "reply": _spoken_list(CONFIRM_PHRASES + CANCEL_PHRASES),
        "negated": "(do not | don't | never | no | not) (<move> | <rotate> | <tilt> | <zoom> | <acquire> | <show> | "
                   "<collimate>)",
    }
    return rules


def corpus_sentences(vocabulary: Vocabulary | None = None, count: int = 40000, seed: int = 0,
                     optional_p: float = 0.4) -> list[list[str]]:
    """The seeded training corpus of the command language model (word lists)."""
    from .lm import sample_sentences

    return [" ".join(s).split() for s in sample_sentences(corpus_rules(vocabulary), "sentence", count, seed,
                                                          optional_p=optional_p)]


def grammar_words(grammar: str) -> list[str]:
    """The terminal words of a JSGF grammar (rule names, operators and header removed)."""
    body = "\n".join(line.split("=", 1)[1] for line in grammar.splitlines() if "=" in line)
    body = re.sub(r"<[^>]+>", " ", body)
    return sorted(set(re.findall(r"[a-z0-9']+", body)))


# ------------------------------------------------------------------------------------------
# The recogniser
# ------------------------------------------------------------------------------------------

PRONUNCIATIONS = Path(__file__).with_name("pronunciations.dict")


def _model_dictionary() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"


def read_dictionary(path: Path) -> dict[str, list[str]]:
    """word -> pronunciations (alternates "word(2)" folded in), from a CMU-format file."""
    entries: dict[str, list[str]] = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        word, phones = line.split(None, 1)
        entries.setdefault(re.sub(r"\(\d+\)$", "", word), []).append(phones.strip())
    return entries


def grammar_lexicon(words, abbreviations=frozenset(), use_espeak: bool = True
                    ) -> tuple[dict[str, list[str]], list[str], dict[str, str]]:
    """(pronunciations of `words`, words without one, the ones made by rule here).

    Order: cmudict, our reviewed `pronunciations.dict` (generated by `fluorosam
    evaluate-language --write-pronunciations`), then the rules of `pronounce`."""
    cmu = read_dictionary(_model_dictionary())
    ours = read_dictionary(PRONUNCIATIONS)
    lexicon, missing, made = {}, [], {}
    for word in words:
        phones = ours.get(word) if word in abbreviations else (cmu.get(word) or ours.get(word))
        if not phones:
            made_phones = pronounce(word, lambda w: (cmu.get(w) or [None])[0], word in abbreviations,
                                    use_espeak=use_espeak)
            if not made_phones:
                missing.append(word)
                continue
            phones = [made_phones]
            made[word] = made_phones
        lexicon[word] = phones
    return lexicon, missing, made


def write_lexicon(lexicon: dict[str, list[str]], path: Path) -> Path:
    lines = []
    for word in sorted(lexicon):
        lines += [f"{word}{'' if i == 0 else f'({i + 1})'} {p}" for i, p in enumerate(lexicon[word])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


LM_FORMAT_VERSION = 1
DITHER_LSB = 2.0                       # seeded dither on every utterance
LOG_BASE_NATS = math.log(1.0001)       # pocketsphinx's integer logs are in base 1.0001
UNDERFLOW_NATS = math.log(5e-324)      # the bindings return exp(score): 0 below this


def build_language_model(vocabulary: Vocabulary, config: SpeechConfig, abbreviations=frozenset()
                         ) -> tuple[str, dict[str, list[str]], list[str], dict[str, str]]:
    """(ARPA text, lexicon, words without a pronunciation, words pronounced by rule) of the
    command language model: `config.lm_sentences` sentences of `corpus_rules`, counted into an
    order-`config.lm_order` backoff model, plus `config.background_words` frequent English words
    sharing `config.background_mass` of the unigram probability."""
    from .lm import build_arpa

    sentences = corpus_sentences(vocabulary, config.lm_sentences, config.lm_seed, config.lm_optional_p)
    words = sorted({w for s in sentences for w in s})
    lexicon, missing, made = grammar_lexicon(words, abbreviations)
    if missing:
        log.warning("no pronunciation for %d corpus words; their sentences left out: %s", len(missing),
                    ", ".join(missing[:20]))
        sentences = [s for s in sentences if all(w in lexicon for w in s)]
    background = {}
    if config.background_words > 0 and config.background_mass > 0:
        cmu = read_dictionary(_model_dictionary())
        background = {w: p for w, p in background_words(config.background_words).items() if w in cmu}
        for word in background:
            lexicon.setdefault(word, cmu[word])
    arpa = build_arpa(sentences, config.lm_order, lexicon=lexicon, background=background,
                      background_mass=config.background_mass if background else 0.0)
    return arpa, lexicon, missing, made


FEATURE_PARAMS = Path("en-us") / "feat.params"


def _feature_params(directory: Path, overrides: dict[str, str]) -> Path:
    """The acoustic model's feat.params with `overrides` (pocketsphinx reads cmn and
    remove_noise from this file, over any value passed to the decoder)."""
    from pocketsphinx import get_model_path

    params: dict[str, str] = {}
    source = Path(get_model_path()) / "en-us" / FEATURE_PARAMS
    for line in source.read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].startswith("-"):
            params[parts[0][1:]] = parts[1].strip()
    params.update(overrides)
    path = directory / "feat.params"
    path.write_text("".join(f"-{key} {value}\n" for key, value in params.items()), encoding="utf-8")
    return path


def background_words(count: int) -> dict[str, float]:
    """The `count` most frequent English words (by pocketsphinx's generic unigram model) that
    have a cmudict pronunciation, word -> probability. For the language model's garbage share."""
    from pocketsphinx import NGramModel, get_model_path

    if count <= 0:
        return {}
    model_dir = Path(get_model_path()) / "en-us"
    generic = NGramModel.readfile(str(model_dir / "en-us.lm.bin"))
    words = [w for w in read_dictionary(_model_dictionary()) if re.fullmatch(r"[a-z']+", w)]
    scored = sorted(((generic.prob([w]), w) for w in words), reverse=True)[:count]
    # prob() is a log in base 1.0001
    return {w: math.exp(score * math.log(1.0001)) for score, w in scored}


def _options(text: str) -> dict[str, object]:
    """"topn=8,beam=1e-60" -> {"topn": 8, "beam": 1e-60} (numbers as numbers)."""
    options: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            options[name.strip()] = int(value) if re.fullmatch(r"-?\d+", value.strip()) else float(value)
        except ValueError:
            options[name.strip()] = value.strip()
    return options


def _cache_dir() -> Path:
    import os

    root = os.environ.get("FLUOROSAM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fluorosam_ros")
    return Path(root) / "asr"


ENGINES = ("ctc", "pocketsphinx")


def make_recognizer(config: "SpeechConfig | None" = None, vocabulary: Vocabulary | None = None):
    """The recogniser `config.engine` names (both have the same interface)."""
    config = config or SpeechConfig()
    if config.engine == "ctc":
        from .acoustic.recognizer import CtcSpeechRecognizer

        return CtcSpeechRecognizer(vocabulary, config)
    if config.engine == "pocketsphinx":
        return SpeechRecognizer(vocabulary, config)
    raise ValueError(f"unknown speech engine {config.engine!r}: one of {ENGINES}")


class UtteranceBuffer:
    """What every recogniser shares: streaming into one utterance, its length limits, and the
    rejection of fits below `config.reject_gap`. Subclasses set `config` and `recognize`."""

    config: SpeechConfig
    # the fits `fluorosam evaluate-language --tune` sweeps motion_gap, clear_gap and word_gap over
    tuning_gaps: tuple[float, ...] = ()
    tuning_clear_gaps: tuple[float, ...] = ()
    tuning_word_gaps: tuple[float, ...] = (-1e9,)
    # the learned gate parse_recognition uses for this engine's actions; None: the hand checks
    action_gate: ActionGate | None = None

    def start(self) -> None:
        self._buffer: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        self._buffer.append(np.asarray(samples, dtype=np.int16))

    def finish(self) -> Recognition:
        audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.int16)
        self._buffer = []
        return self.recognize(audio)

    def recognize(self, samples: np.ndarray) -> Recognition:
        raise NotImplementedError

    def interpret(self, recognition: Recognition, parser: "P.CommandParser"):
        """The Intent of one of this recogniser's recognitions, through its action gate."""
        return parse_recognition(recognition, parser, self.config.motion_gap, self.config, self.action_gate)

    def length_refusal(self, samples: np.ndarray) -> str:
        """Why this audio is not decoded at all ("" when it is)."""
        if samples.size < self.config.sample_rate_hz * 0.1:
            return "audio shorter than 0.1 s"
        if samples.size > int(self.config.max_utterance_s * self.config.sample_rate_hz):
            return f"utterance longer than {self.config.max_utterance_s:g} s"
        return ""

    def silence_refusal(self, samples: np.ndarray, min_level_lsb: float = 30.0, min_rise_db: float = 6.0) -> str:
        """Why `samples` hold no speech ("" when they may): nothing louder than `min_level_lsb`
        RMS in any 25 ms frame, or the loudest frames (95th percentile) less than
        `min_rise_db` above the quietest (10th): a steady hiss, a hum, digital silence."""
        frame = int(0.025 * self.config.sample_rate_hz)
        usable = samples[:samples.size // frame * frame].astype(np.float64).reshape(-1, frame)
        levels = np.sqrt(np.mean(usable ** 2, axis=1)) + 1e-3
        if levels.max() < min_level_lsb:
            return f"no speech (below {min_level_lsb:g} LSB RMS)"
        rise = 20 * np.log10(np.percentile(levels, 95) / np.percentile(levels, 10))
        if rise < min_rise_db:
            return f"no speech (steady sound: {rise:.1f} dB between loud and quiet frames)"
        return ""

    def judged(self, text: str, gap: float, frames: int, decode_ms: float, details: dict) -> Recognition:
        """The Recognition of decoded `text`: refused when empty or its fit is below reject_gap."""
        if not text:
            return Recognition("", False, "", gap, frames, decode_ms, "nothing recognised", details)
        if self.config.reject_enabled and not gap >= self.config.reject_gap:
            return Recognition("", False, text, gap, frames, decode_ms,
                               f"does not sound like a command (fit {gap:.2f} < {self.config.reject_gap:.2f})",
                               details)
        return Recognition(text, True, text, gap, frames, decode_ms, details=details)


class SpeechRecognizer(UtteranceBuffer):
    """Command speech -> text, with a confidence gate; `recognize(samples)` or start/feed/finish.

    search "lm" (default): a trigram model of our commands (see `lm.py`, `corpus_rules`),
    built once and cached on disk; search "grammar": the strict JSGF grammar (the first
    design, kept for comparison). The dictionary holds only the model's words."""

    tuning_gaps = (-99.0, -5.0, -4.75, -4.5, -4.25, -4.0)
    tuning_clear_gaps = (-4.0, -3.75, -3.5)

    def __init__(self, vocabulary: Vocabulary | None = None, config: SpeechConfig | None = None) -> None:
        import tempfile

        from pocketsphinx import Decoder  # deferred: optional dependency

        self.vocabulary = vocabulary or default_vocabulary()
        self.config = config or SpeechConfig()
        if self.config.search not in ("lm", "grammar"):
            raise ValueError(f"unknown search {self.config.search!r}: lm or grammar")
        started = time.perf_counter()
        self._tmp = tempfile.TemporaryDirectory(prefix="fluorosam_asr_")
        tmp = Path(self._tmp.name)
        abbreviations = frozenset(normalize(t) for n in self.vocabulary.names()
                                  for t in self.vocabulary.entry(n).abbreviations)
        self.dropped_words: list[str] = []
        self.added_words: dict[str, str] = {}
        self.grammar = ""
        if self.config.search == "grammar":
            search_args, lexicon = self._grammar_search(tmp, abbreviations)
        else:
            search_args, lexicon = self._lm_search(tmp, abbreviations)
        if self.added_words:
            log.info("%d words pronounced by rule (not in %s): %s", len(self.added_words),
                     PRONUNCIATIONS.name, ", ".join(sorted(self.added_words)[:10]))
        dictionary = write_lexicon(lexicon, tmp / "commands.dict")
        features = _feature_params(tmp, {"remove_noise": "yes" if self.config.remove_noise else "no",
                                         "cmn": self.config.cmn})
        self._decoder = Decoder(loglevel="FATAL", dither=True, seed=self.config.dither_seed,
                                samprate=float(self.config.sample_rate_hz), dict=str(dictionary),
                                featparams=str(features), lw=float(self.config.language_weight),
                                **search_args, **({"warp_type": "inverse_linear",
                                                   "warp_params": f"{self.config.frequency_warp:g}"}
                                                  if self.config.frequency_warp != 1.0 else {}),
                                **_options(self.config.decoder_options))
        if self.config.search == "grammar":
            self._decoder.add_jsgf_string("commands", self.grammar)
            self._decoder.activate_search("commands")
        self._logmath = self._decoder.get_logmath()
        self.words = len(lexicon)
        self.load_s = time.perf_counter() - started
        self.start()
        log.info("speech recogniser (%s) ready in %.1f s (%d words)", self.config.search, self.load_s, len(lexicon))

    # -- search setup ------------------------------------------------------------------------

    def _grammar_search(self, tmp: Path, abbreviations) -> tuple[dict, dict]:
        self.grammar = build_grammar(self.vocabulary, self.config)
        lexicon, self.dropped_words, self.added_words = grammar_lexicon(grammar_words(self.grammar), abbreviations)
        if self.dropped_words:
            pattern = r"\b(" + "|".join(map(re.escape, self.dropped_words)) + r")\b"
            self.grammar = "\n".join(
                line if "=" not in line or line.startswith("public") else
                line.split("=", 1)[0] + "= " + " | ".join(
                    alt for alt in line.split("=", 1)[1].rstrip(";").split(" | ")
                    if not re.search(pattern, alt)) + ";"
                for line in self.grammar.splitlines()) + "\n"
            log.warning("no pronunciation for %d words; their phrases left out: %s",
                        len(self.dropped_words), ", ".join(self.dropped_words[:20]))
        return {"lm": None}, lexicon

    def _lm_search(self, tmp: Path, abbreviations) -> tuple[dict, dict]:
        """Build (or load from the cache) the command language model and its dictionary."""
        import hashlib
        import json

        config = self.config
        key_material = json.dumps({
            "rules": corpus_rules(self.vocabulary), "sentences": config.lm_sentences, "order": config.lm_order,
            "seed": config.lm_seed, "optional_p": config.lm_optional_p,
            "background": [config.background_words, config.background_mass],
            "pronunciations": PRONUNCIATIONS.read_text(encoding="utf-8") if PRONUNCIATIONS.is_file() else "",
            "builder": Path(__file__).with_name("lm.py").read_text(encoding="utf-8"),
            "version": LM_FORMAT_VERSION}, sort_keys=True)
        key = hashlib.sha256(key_material.encode()).hexdigest()[:16]
        cache = _cache_dir() / key
        arpa_path, dict_path = cache / "commands.arpa", cache / "commands.dict"
        if config.cache and arpa_path.is_file() and dict_path.is_file():
            lexicon = read_dictionary(dict_path)
            log.info("command language model from the cache %s", cache)
            return {"lm": str(arpa_path)}, lexicon
        arpa, lexicon, self.dropped_words, self.added_words = build_language_model(self.vocabulary, config,
                                                                                   abbreviations)
        target = cache if config.cache else tmp
        try:
            target.mkdir(parents=True, exist_ok=True)
            partial = target / f"commands.arpa.{id(self)}.tmp"
            partial.write_text(arpa, encoding="utf-8")
            write_lexicon(lexicon, target / "commands.dict")
            partial.replace(target / "commands.arpa")
        except OSError as error:   # a read-only home: build in the temporary directory
            log.warning("cannot cache the language model in %s (%s)", target, error)
            target = tmp
            (target / "commands.arpa").write_text(arpa, encoding="utf-8")
        return {"lm": str(target / "commands.arpa")}, lexicon

    # -- one utterance -----------------------------------------------------------------------

    def _nats(self, value: float) -> float:
        """A probability the bindings returned (logmath.exp of an integer log) back in nats;
        an underflowed 0 counts as the smallest double's log."""
        return self._logmath.log(value) * LOG_BASE_NATS if value > 0 else UNDERFLOW_NATS

    def _fit(self) -> tuple[float, int]:
        """(acoustic fit of the best path per speech frame, speech frames).

        pocketsphinx scores every frame relative to its best-scoring senone, so a word's
        acoustic score is already "how much worse than the best unconstrained state sequence"
        (a phone loop with no constraints at all); off-topic speech forced into command words
        scores much lower per frame than a command does. Silence and fillers are left out."""
        total, frames = 0.0, 0
        for segment in self._decoder.seg():
            if segment.word.startswith(("<", "[", "+")) or segment.word in ("<sil>", "SIL"):
                continue
            total += self._nats(segment.ascore)
            frames += segment.end_frame - segment.start_frame + 1
        return (total / frames if frames else -math.inf), frames

    def _with_noise_floor(self, samples: np.ndarray) -> np.ndarray:
        """The samples with a seeded noise floor. A microphone never delivers exact digital
        silence; synthetic audio does, and it broke decoding even with pocketsphinx's own dither
        on (clean "stop" -> "stop the"): a 2 LSB dither always, and, where the audio's own floor
        (RMS of its quietest 5% of 25 ms frames) is below `noise_floor`, noise topping it up
        to that level (measured on 36 clean espeak-ng commands: 5/36 exact with the dither
        alone, 26/36 with a floor of 100 LSB, about -50 dBFS). Audio as noisy as that already
        gets the dither only, so noisy recordings decode as before."""
        x = samples.astype(np.float64)
        rng = np.random.default_rng(self.config.dither_seed)
        x = x + rng.normal(0.0, DITHER_LSB, x.size)
        frame = int(0.025 * self.config.sample_rate_hz)
        if self.config.noise_floor > 0 and x.size >= frame:
            energies = np.sort(np.mean(samples[:x.size // frame * frame].astype(np.float64).reshape(-1, frame) ** 2,
                                       axis=1))
            level = float(np.sqrt(np.mean(energies[:max(1, len(energies) // 20)])))
            if level < self.config.noise_floor:
                top_up = np.sqrt(self.config.noise_floor ** 2 - level ** 2)
                x = x + np.random.default_rng(self.config.dither_seed + 1).normal(0.0, top_up, x.size)
        return np.clip(x, -32768, 32767).astype(np.int16)   # truncation, as before the floor existed

    def _front_end(self, samples: np.ndarray) -> np.ndarray:
        """The samples through the configured stages of `denoise.enhance` (unchanged when none is on)."""
        from .denoise import FrontEnd, enhance

        config = self.config
        if not (config.hum_notch or config.denoise):
            return samples
        front = FrontEnd(hum_notch=config.hum_notch, spectral=config.denoise,
                         floor_db=config.denoise_floor_db, oversubtract=config.denoise_oversubtract,
                         max_unsteadiness_db=config.denoise_max_unsteadiness_db)
        return enhance(samples, config.sample_rate_hz, front)

    def _decode(self, samples: np.ndarray) -> tuple[str, float, int, dict]:
        """(words, fit, frames, details) of one pass of the decoder over `samples`."""
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(self._with_noise_floor(samples).tobytes(), False, True)
        decoder.end_utt()
        hyp = decoder.hyp()
        text = " ".join(w for w in (hyp.hypstr.split() if hyp else []) if not w.startswith(("<", "[", "+")))
        gap, frames = self._fit() if text else (math.nan, 0)
        alternatives: list[str] = []
        if text and self.config.nbest > 1:
            for index, candidate in enumerate(decoder.nbest()):
                if index >= self.config.nbest:
                    break
                if candidate is None:   # the bindings yield None for an N-best entry without a hypothesis
                    continue
                words = " ".join(w for w in candidate.hypstr.split() if not w.startswith(("<", "[", "+")))
                if words and words not in alternatives:
                    alternatives.append(words)
        details = {"posterior": float(hyp.prob) if hyp else 0.0, "speech_frames": frames,
                   "alternatives": alternatives}
        return text, gap, decoder.n_frames(), details

    def recognize(self, samples: np.ndarray) -> Recognition:
        """Decode one utterance (int16 mono at the configured rate)."""
        samples = np.asarray(samples, dtype=np.int16)
        refusal = self.length_refusal(samples)
        if refusal:
            return Recognition("", False, reason=refusal)
        started = time.perf_counter()
        text, gap, total_frames, details = self._decode(self._front_end(samples))
        return self.judged(text, gap, total_frames, (time.perf_counter() - started) * 1e3, details)


def _reading(intent) -> tuple:
    return (intent.kind,) + tuple(sorted(intent.slots().items()))


def same_readings(parser: "P.CommandParser", intent, alternatives) -> list[bool]:
    """Whether the parser reads each N-best alternative as `intent`'s kind and slots."""
    reading = _reading(intent)
    return [_reading(parser.parse(a, source="speech")) == reading for a in alternatives]


def parse_recognition(recognition: Recognition, parser: "P.CommandParser", motion_gap: float | None = None,
                      config: SpeechConfig | None = None, gate: ActionGate | None = None):
    """The Intent of a recognition: the parser's reading of accepted text, else not_understood.

    Two tiers: any accepted text may give stop, where or not_understood; an intent that moves
    the C-arm or fires must also pass the action gate, else the user is asked to repeat it (the
    reading is kept as the candidate, and in details['held_back'] for a read-back:
    confirmation.py). With a learned `gate` (action_gate.py, the CTC engine's default) its
    probability that the reading is right must reach its threshold. Without one, three hand checks:
    - `motion_gap`: a stricter acoustic fit;
    - `config.motion_confidence`: the parser's confidence in the heard words (no unexplained
      word: misrecognitions usually leave some);
    - `config.motion_agreement`: the share of the decoder's N-best word strings that the parser
      reads as the SAME intent and slots (a command said clearly keeps its meaning across its
      alternatives, which differ in fillers; misheard talk changes meaning from one to the next);
      not needed when the fit reaches `config.clear_gap`."""
    from .confirmation import HELD_BACK
    from .intents import not_understood

    config = config or SpeechConfig(motion_agreement=0.0, motion_confidence=0.0)
    if not recognition.accepted:
        intent = not_understood(recognition.raw_text, f"speech not accepted: {recognition.reason}",
                                source="speech")
        intent.details.update(asr_gap=recognition.gap, asr_ms=recognition.decode_ms)
        return intent
    intent = parser.parse(recognition.text, source="speech")
    alternatives = recognition.details.get("alternatives") or []
    same: list[bool] = []
    if intent.acts and alternatives and (gate is not None or config.motion_agreement > 0):
        same = same_readings(parser, intent, alternatives)
    agreement = sum(same) / len(same) if same else 1.0
    if intent.acts:
        problem = _gate_problem(recognition, intent, same, gate) if gate is not None else \
            _hand_gate_problem(recognition, intent, agreement, motion_gap, config)
        problem = problem or teen_ty_doubt(recognition.text, alternatives)
        if problem:
            held_back = intent
            intent = not_understood(recognition.text, f"heard {recognition.text!r} but not clearly enough to act "
                                    f"({problem}); please repeat", candidates=(intent.describe(),), source="speech")
            # kept for a read-back: a "yes" may carry it out (confirmation.ReadBack)
            intent.details[HELD_BACK] = held_back
    intent.details.update(asr_gap=recognition.gap, asr_ms=recognition.decode_ms, asr_agreement=agreement)
    return intent


# "fifteen" and "fifty" differ in one unstressed syllable, the commonest wrong action in noise
# (a 15 mm move heard as 50 mm); the decoder usually keeps the other one among its alternatives
_TEENS = {teen: ty for teen, value in UNITS_WORDS.items() if value is not None and value >= 13
          for ty, tens in TENS_WORDS.items() if tens == 10 * (value - 10)}
TEEN_TY = {**_TEENS, **{ty: teen for teen, ty in _TEENS.items()}}


def teen_ty_doubt(text: str, alternatives: Sequence[str]) -> str:
    """Why an amount heard in `text` is in doubt: an N-best alternative holds its teen/ty
    counterpart ("fifty" heard, "fifteen" also decoded); "" when none does."""
    words = text.split()
    others = {word for alternative in alternatives for word in alternative.split()}
    doubted = [word for word in words if word in TEEN_TY and TEEN_TY[word] in others and TEEN_TY[word] not in words]
    return f"{doubted[0]} or {TEEN_TY[doubted[0]]}? say the number again" if doubted else ""


def _gate_problem(recognition: Recognition, intent, same: list[bool], gate: ActionGate) -> str:
    from .action_gate import action_features

    features = action_features(recognition, intent.confidence, same)
    intent.details["asr_action_probability"] = float(gate.probability(features))
    return gate.refusal(features)


def _hand_gate_problem(recognition: Recognition, intent, agreement: float, motion_gap: float | None,
                       config: SpeechConfig) -> str:
    if motion_gap is not None and not recognition.gap >= motion_gap:
        return f"fit {recognition.gap:.2f} < {motion_gap:.2f}"
    if intent.confidence < config.motion_confidence:
        return f"confidence {intent.confidence:.2f} < {config.motion_confidence:.2f}"
    if agreement < config.motion_agreement and not recognition.gap >= config.clear_gap:
        return f"{100 * agreement:.0f}% of the alternatives agree < {100 * config.motion_agreement:.0f}%"
    if recognition.details.get("worst_word", (None, 0.0))[1] < config.word_gap:
        word, fit = recognition.details["worst_word"]
        return f"{word!r} fits {fit:.1f} < {config.word_gap:.1f}"
    return ""
