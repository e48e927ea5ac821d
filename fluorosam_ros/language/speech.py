"""Offline speech recognition for commands: pocketsphinx with a JSGF grammar built from the
same vocabulary and command words the text parser uses, plus out-of-grammar rejection.

Why a grammar: pocketsphinx's generic language model turns short commands into nonsense
("take a shot" -> "do you kill shot"); a grammar of our commands decodes them exactly.

Why rejection is needed: a grammar forces a match, so off-topic speech comes out as some
command. Each utterance is therefore decoded twice on the same features:
- by the grammar, and
- by a free phone loop (allphone search with the shipped phonetic LM), which fits any speech.
For speech that the grammar covers, both paths explain the audio about equally well; for
speech outside it, the grammar's path is much worse. The per-frame log-score gap (grammar minus
phone loop, in natural-log units) is compared with `reject_gap`; below it the recogniser
returns nothing. The recognised text then goes through the same parser as typed text, whose
own confidence gate applies as well.

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

import numpy as np

from . import parser as P
from .pronounce import pronounce
from .vocabulary import CARDINALS, Vocabulary, default_vocabulary, normalize

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
UNITS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


@dataclass(frozen=True)
class SpeechConfig:
    sample_rate_hz: int = SAMPLE_RATE
    reject_gap: float = -0.9          # nat per frame; below: out of grammar (tuned, see README)
    motion_gap: float = -0.6          # an intent that moves or fires needs at least this gap
    reject_enabled: bool = True
    dither_seed: int = 7
    max_utterance_s: float = 15.0
    include_questions: bool = True   # description questions ("which bone is in the left thigh")
    max_structure_forms: int = 0     # 0 = all the vocabulary's forms


@dataclass
class Recognition:
    """What the recogniser heard. `text` is "" when nothing was accepted."""

    text: str
    accepted: bool
    raw_text: str = ""
    gap: float = math.nan            # grammar minus phone loop, nat per frame
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


def build_grammar(vocabulary: Vocabulary | None = None, config: SpeechConfig | None = None) -> str:
    """The JSGF command grammar, in the parser's words (P.*_PHRASES) and the vocabulary's."""
    vocabulary = vocabulary or default_vocabulary()
    config = config or SpeechConfig()
    structures = structure_phrases(vocabulary, config.max_structure_forms)
    # <structure> is referenced ONCE: pocketsphinx expands every reference into its own copy
    # of the finite-state graph, and five copies of ~1,700 phrases took minutes to compile.
    amount = "<number> (millimeters | millimeter | mm | centimeters | centimeter | cm)"
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
    lines = ["#JSGF V1.0;", "grammar commands;", f"public <command> = {public};"]
    lines += [f"<{name}> = {body};" for name, body in rules.items()]
    return "\n".join(lines) + "\n"


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


class SpeechRecognizer:
    """Grammar decoding with phone-loop rejection; `recognize(samples)` or start/feed/finish.

    One pocketsphinx decoder holds both searches (loading the acoustic model twice cost
    seconds), with a dictionary of only the grammar's words (the full cmudict costs more)."""

    def __init__(self, vocabulary: Vocabulary | None = None, config: SpeechConfig | None = None) -> None:
        import tempfile

        from pocketsphinx import Decoder, get_model_path  # deferred: optional dependency

        self.vocabulary = vocabulary or default_vocabulary()
        self.config = config or SpeechConfig()
        started = time.perf_counter()
        self.grammar = build_grammar(self.vocabulary, self.config)
        abbreviations = frozenset(normalize(t) for n in self.vocabulary.names()
                                  for t in self.vocabulary.entry(n).abbreviations)
        lexicon, self.dropped_words, self.added_words = grammar_lexicon(grammar_words(self.grammar), abbreviations)
        if self.added_words:
            log.info("%d grammar words pronounced by rule (not in %s): %s", len(self.added_words),
                     PRONUNCIATIONS.name, ", ".join(sorted(self.added_words)[:10]))
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
        self._tmp = tempfile.TemporaryDirectory(prefix="fluorosam_asr_")
        dictionary = write_lexicon(lexicon, Path(self._tmp.name) / "commands.dict")
        self._decoder = Decoder(loglevel="FATAL", dither=True, seed=self.config.dither_seed,
                                samprate=float(self.config.sample_rate_hz), dict=str(dictionary))
        self._decoder.add_jsgf_string("commands", self.grammar)
        if self.config.reject_enabled:
            self._decoder.add_allphone_file("phones", str(Path(get_model_path()) / "en-us" / "en-us-phone.lm.bin"))
        self._logmath = self._decoder.get_logmath()
        self.load_s = time.perf_counter() - started
        self._buffer: list[np.ndarray] = []
        log.info("speech recogniser ready in %.1f s (%d grammar words)", self.load_s, len(lexicon))

    # -- streaming ---------------------------------------------------------------------------

    def start(self) -> None:
        self._buffer = []

    def feed(self, samples: np.ndarray) -> None:
        self._buffer.append(np.asarray(samples, dtype=np.int16))

    def finish(self) -> Recognition:
        audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, np.int16)
        self._buffer = []
        return self.recognize(audio)

    # -- one utterance -----------------------------------------------------------------------

    def _decode(self, search: str, audio: bytes):
        decoder = self._decoder
        decoder.activate_search(search)
        decoder.start_utt()
        decoder.process_raw(audio, False, True)
        decoder.end_utt()
        hyp = decoder.hyp()
        if hyp is None:
            return None, -math.inf
        # hyp.score is exp(log score); take the log in pocketsphinx's own log base, then nats
        score = self._logmath.log(hyp.score) if hyp.score > 0 else -math.inf
        return hyp.hypstr, score * math.log(1.0001)

    def recognize(self, samples: np.ndarray) -> Recognition:
        """Decode one utterance (int16 mono at the configured rate)."""
        samples = np.asarray(samples, dtype=np.int16)
        if samples.size < self.config.sample_rate_hz * 0.1:
            return Recognition("", False, reason="audio shorter than 0.1 s")
        limit = int(self.config.max_utterance_s * self.config.sample_rate_hz)
        if samples.size > limit:
            return Recognition("", False, reason=f"utterance longer than {self.config.max_utterance_s:g} s")
        started = time.perf_counter()
        # A microphone never delivers exact digital silence; synthetic audio does, and it broke
        # decoding even with pocketsphinx's own dither on (clean "stop" -> "stop the"). Add a
        # seeded noise floor of ~2 LSB so results repeat.
        floor = np.random.default_rng(self.config.dither_seed).normal(0.0, 2.0, samples.size)
        audio = np.clip(samples.astype(np.float64) + floor, -32768, 32767).astype(np.int16).tobytes()
        text, grammar_score = self._decode("commands", audio)
        frames = self._decoder.n_frames()
        gap = math.nan
        if text and self.config.reject_enabled:
            _, phone_score = self._decode("phones", audio)
            gap = (grammar_score - phone_score) / max(frames, 1)
        decode_ms = (time.perf_counter() - started) * 1e3
        if not text:
            return Recognition("", False, "", gap, frames, decode_ms, "nothing recognised")
        if self.config.reject_enabled and not gap >= self.config.reject_gap:
            return Recognition("", False, text, gap, frames, decode_ms,
                               f"out of grammar (gap {gap:.2f} < {self.config.reject_gap:.2f} per frame)")
        return Recognition(text, True, text, gap, frames, decode_ms)


def parse_recognition(recognition: Recognition, parser: "P.CommandParser", motion_gap: float | None = None):
    """The Intent of a recognition: the parser's reading of accepted text, else not_understood.

    Two tiers: any accepted text may give stop, where or not_understood; an intent that moves
    the C-arm or fires also needs `motion_gap` (a stricter fit), otherwise the user is asked
    to repeat it, with the reading as the candidate."""
    from .intents import not_understood

    if not recognition.accepted:
        intent = not_understood(recognition.raw_text, f"speech not accepted: {recognition.reason}",
                                source="speech")
    else:
        intent = parser.parse(recognition.text, source="speech")
        if motion_gap is not None and intent.acts and not recognition.gap >= motion_gap:
            intent = not_understood(recognition.text, f"heard {recognition.text!r} but not clearly enough to act "
                                    f"(gap {recognition.gap:.2f} < {motion_gap:.2f}); please repeat",
                                    candidates=(intent.describe(),), source="speech")
    intent.details.update(asr_gap=recognition.gap, asr_ms=recognition.decode_ms)
    return intent
