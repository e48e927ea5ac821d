"""Language evaluation: the command set through the text parser and through speech.

Text: every utterance of `eval/commands.yaml` is parsed; an item is correct when the intent
kind and every expected slot match exactly and no other slot is set. Negatives must give no
action (motion or exposure). Latency is the parse time per utterance.

Speech: every utterance is synthesised by espeak-ng in each voice/speed, padded with silence,
mixed with seeded room noise at the given SNR, recognised (command language model) and parsed,
with the recogniser's action gate (`recognizer.interpret`: the learned gate fitted by
`--fit-gate`, or the hand thresholds of `--tune`; both from the tuning split, eval/tuning.yaml,
never from this set). Latency is measured from the end of the audio
(the whole utterance has been received) to the intent. WER compares the recognised words with
the reference words after the same normalisation (numbers as digits) over the non-negative
utterances; a rejected utterance counts as all words deleted.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from tqdm import tqdm

from .intents import NOT_UNDERSTOOD, STOP, Intent
from .numbers import normalize_command

log = logging.getLogger(__name__)

COMMANDS_PATH = Path(__file__).with_name("eval") / "commands.yaml"
# written by evaluators who never saw the parser (see its header): a text row of its own
INDEPENDENT_PATH = Path(__file__).with_name("eval") / "independent.yaml"
DEFAULT_VOICES = (("en-us", 150), ("en-us", 190), ("en-gb", 130), ("en-gb", 170))


@dataclass(frozen=True)
class Command:
    text: str
    expect: dict[str, Any]
    tags: tuple[str, ...] = ()

    @property
    def negative(self) -> bool:
        return self.expect.get("kind") == NOT_UNDERSTOOD

    @property
    def kind(self) -> str:
        return str(self.expect["kind"])


def load_commands(path: Path | str | None = None) -> list[Command]:
    data = yaml.safe_load(Path(path or COMMANDS_PATH).read_text(encoding="utf-8"))
    return [Command(str(item["text"]), dict(item["expect"]), tuple(item.get("tags") or ()))
            for item in data["commands"]]


def matches(intent: Intent, expect: dict[str, Any]) -> bool:
    """Exact intent kind and slots (amounts to 0.1)."""
    if intent.kind != expect.get("kind"):
        return False
    if intent.kind == NOT_UNDERSTOOD:
        return True
    wanted = {k: (round(float(v), 1) if k == "amount" else v) for k, v in expect.items() if k != "kind"}
    return intent.slots() == wanted


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance over words."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


@dataclass
class Outcome:
    text: str
    expect: dict[str, Any]
    got: dict[str, Any]
    correct: bool
    false_action: bool
    latency_ms: float
    tags: tuple[str, ...] = ()
    voice: str = "text"
    heard: str = ""
    word_errors: int = 0
    reference_words: int = 0
    gap: float = math.nan            # speech: acoustic fit of the decoded path, nat per frame
    # speech: the reading the action gate held back for a read-back matches (a "yes" makes it right)
    held_right: bool = False
    offered: bool = False            # speech: a held-back reading was offered for a read-back
    heard_as_reply: str = ""         # speech: confirmation.spoken_reply of the recognition


@dataclass
class Summary:
    name: str
    utterances: int
    accuracy: float                 # exact intent+slots over all utterances
    accuracy_positive: float        # over the non-negative ones
    negatives: int
    false_actions: int              # negatives that produced motion or exposure
    misread_actions: int            # positives read as a DIFFERENT action (wrong motion)
    stop_recall: float              # stop utterances read as stop
    stop_misread: int               # stop utterances read as anything else that acts
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    wer: float = math.nan
    # speech: the acoustic fit of each positive / negative utterance (for tuning reject_gap)
    gaps_positive: list[float] = field(default_factory=list)
    gaps_negative: list[float] = field(default_factory=list)
    by_tag: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    # speech, read-back (confirmation.py): right at once or after one "yes" to the offer; offers
    # made on negatives (a "no" drops them) and negatives heard as a reply (never confirm anything)
    accuracy_readback: float = math.nan
    offers_on_negatives: int = 0
    wrong_offers_on_positives: int = 0   # a held-back reading that is not what was said ("no" drops it)
    negatives_heard_as_reply: int = 0


def summarize(name: str, outcomes: list[Outcome]) -> Summary:
    positives = [o for o in outcomes if o.expect.get("kind") != NOT_UNDERSTOOD]
    negatives = [o for o in outcomes if o.expect.get("kind") == NOT_UNDERSTOOD]
    stops = [o for o in outcomes if o.expect.get("kind") == STOP]
    latencies = sorted(o.latency_ms for o in outcomes) or [math.nan]
    tags = sorted({t for o in outcomes for t in o.tags})
    ref_words = sum(o.reference_words for o in positives)
    return Summary(
        name=name, utterances=len(outcomes),
        accuracy=sum(o.correct for o in outcomes) / max(len(outcomes), 1),
        accuracy_positive=sum(o.correct for o in positives) / max(len(positives), 1),
        negatives=len(negatives), false_actions=sum(o.false_action for o in negatives),
        misread_actions=sum(o.false_action for o in positives),
        stop_recall=sum(o.got.get("kind") == STOP for o in stops) / max(len(stops), 1),
        stop_misread=sum(o.got.get("kind") not in (STOP, NOT_UNDERSTOOD) for o in stops),
        latency_p50_ms=statistics.median(latencies),
        latency_p95_ms=latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        latency_max_ms=latencies[-1],
        wer=(sum(o.word_errors for o in positives) / ref_words) if ref_words else math.nan,
        gaps_positive=[round(o.gap, 3) for o in positives if not math.isnan(o.gap)],
        gaps_negative=[round(o.gap, 3) for o in negatives if not math.isnan(o.gap)],
        by_tag={t: sum(o.correct for o in outcomes if t in o.tags) / max(1, sum(t in o.tags for o in outcomes))
                for t in tags},
        failures=[{"text": o.text, "voice": o.voice, "heard": o.heard, "expect": o.expect, "got": o.got}
                  for o in outcomes if not o.correct],
        accuracy_readback=(sum(o.correct or o.held_right for o in outcomes) / max(len(outcomes), 1))
        if any(o.voice != "text" for o in outcomes) else math.nan,
        offers_on_negatives=sum(o.offered for o in negatives),
        wrong_offers_on_positives=sum(o.offered and not o.held_right for o in positives),
        negatives_heard_as_reply=sum(bool(o.heard_as_reply) for o in negatives))


def _outcome(command: Command, intent: Intent, latency_ms: float, voice: str = "text", heard: str = "",
             reference: Sequence[str] = (), hypothesis: Sequence[str] = ()) -> Outcome:
    got = {"kind": intent.kind, **intent.slots()}
    if not intent.understood:
        got["error"] = intent.error
    # An action is false when the utterance asked for none, or for a different one.
    false_action = intent.acts and not matches(intent, command.expect)
    return Outcome(command.text, command.expect, got, matches(intent, command.expect), false_action,
                   latency_ms, command.tags, voice, heard, word_errors(reference, hypothesis) if reference else 0,
                   len(reference))


def evaluate_text(parser, commands: Iterable[Command], name: str = "text") -> Summary:
    parser.warm_up()
    outcomes = []
    for command in commands:
        started = time.perf_counter()
        intent = parser.parse(command.text)
        outcomes.append(_outcome(command, intent, (time.perf_counter() - started) * 1e3))
    return summarize(name, outcomes)


def spoken_in_room(text: str, voice, noise, snr_db: float | None):
    """`text` said by espeak-ng in `voice`, padded with silence, with `noise` (a RoomNoise; None:
    clean) mixed in at `snr_db`."""
    from .audio import mix_at_snr, pad, synthesize

    audio = pad(synthesize(text, voice))
    return audio if noise is None else mix_at_snr(audio, noise.segment(len(audio)), snr_db)


def evaluate_speech(parser, recognizer, commands: Sequence[Command], voices: Sequence[tuple[str, int]] = DEFAULT_VOICES,
                    snr_db: float | None = 10.0, seed: int = 0, progress: bool = False,
                    babble: bool = True) -> list[Summary]:
    """One summary per voice and one over all ('speech')."""
    from .audio import RoomNoise, Voice
    from .confirmation import HELD_BACK, spoken_reply

    parser.warm_up()
    noise = RoomNoise(seed=seed, use_babble=babble) if snr_db is not None else None
    spoken = [c for c in commands if c.text.strip()]   # nothing to say for empty text
    all_outcomes: list[Outcome] = []
    summaries = []
    for name, speed in voices:
        voice = Voice(name, speed)
        outcomes = []
        for index, command in enumerate(spoken):
            audio = spoken_in_room(command.text, voice, noise, snr_db)
            started = time.perf_counter()   # the whole utterance is in: end of audio
            recognition = recognizer.recognize(audio)
            intent = recognizer.interpret(recognition, parser)
            latency = (time.perf_counter() - started) * 1e3
            reference = normalize_command(command.text)
            hypothesis = normalize_command(recognition.raw_text if recognition.accepted else "")
            outcome = _outcome(command, intent, latency, voice.label, recognition.raw_text, reference, hypothesis)
            outcome.gap = recognition.gap
            held = intent.details.get(HELD_BACK)
            outcome.offered = held is not None
            outcome.held_right = held is not None and matches(held, command.expect)
            outcome.heard_as_reply = spoken_reply(recognition)
            outcomes.append(outcome)
            if progress and index % 25 == 0:
                log.info("%s: %d/%d", voice.label, index, len(spoken))
        summaries.append(summarize(f"speech {voice.label}", outcomes))
        all_outcomes += outcomes
    summaries.append(summarize("speech (all voices)", all_outcomes))
    return summaries


TUNING_PATH = Path(__file__).with_name("eval") / "tuning.yaml"
# splits of the tuning sentences into folds whose held-out probabilities are averaged (action_gate.out_of_fold)
GATE_FOLD_SPLITS = 20


def tuning_commands(parser, commands: int = 100, seed: int = 1234, path: Path | None = None) -> list[Command]:
    """The tuning split: eval/tuning.yaml's off-topic sentences (expected: no action) and
    `commands` sentences drawn from the language model's corpus grammar with a seed of their
    own (expected: the parser's reading of their text; those it refuses as text are left out).
    Disjoint from eval/commands.yaml."""
    from .speech import corpus_sentences

    data = yaml.safe_load(Path(path or TUNING_PATH).read_text(encoding="utf-8"))
    items = [Command(str(t), {"kind": NOT_UNDERSTOOD}, ("negative", "tuning"))
             for t in data["off_topic"] + data.get("incomplete", [])]
    for words in corpus_sentences(count=commands, seed=seed):
        intent = parser.parse(" ".join(words))
        if intent.understood:   # a drawn sentence the parser refuses as text has no expected reading
            items.append(Command(" ".join(words), {"kind": intent.kind, **intent.slots()}, ("tuning",)))
    return items


def tuning_recognitions(parser, recognizer, voices: Sequence[tuple[str, int]] = DEFAULT_VOICES,
                        snr_db: float | None = 10.0, seed: int = 5, commands: int = 100) -> list[tuple[Command, Any]]:
    """Each tuning-split utterance, spoken in each voice with room noise, and its Recognition."""
    from .audio import RoomNoise, Voice, spelled_for_speech

    parser.warm_up()
    noise = RoomNoise(seed=seed) if snr_db is not None else None
    items = tuning_commands(parser, commands)
    rows = []
    for name, speed in voices:
        for command in tqdm(items, desc=f"tuning split {name}@{speed}", leave=False):
            # the drawn commands are lower case; "AP" is spoken spelled, as the evaluation writes it
            audio = spoken_in_room(spelled_for_speech(command.text), Voice(name, speed), noise, snr_db)
            rows.append((command, recognizer.recognize(audio)))
    return rows


def _recognition_records(rows) -> list[dict[str, Any]]:
    return [{"text": c.text, "expect": c.expect, "heard": r.raw_text, "accepted": r.accepted,
             "fit": None if math.isnan(r.gap) else round(r.gap, 3),
             "alternatives": r.details.get("alternatives", [])} for c, r in rows]


def tune_speech(parser, recognizer, voices: Sequence[tuple[str, int]] = DEFAULT_VOICES, snr_db: float | None = 10.0,
                seed: int = 5, commands: int = 100) -> dict[str, Any]:
    """Sweep the hand action gate (motion_gap x motion_confidence x motion_agreement x word_gap)
    on the tuning split; the chosen setting: `choose_gate`."""
    from dataclasses import replace

    from .speech import parse_recognition

    ungated = replace(recognizer.config, motion_agreement=0.0, motion_confidence=0.0)
    rows = tuning_recognitions(parser, recognizer, voices, snr_db, seed, commands)
    records = _recognition_records(rows)
    results = []
    gaps, clears = recognizer.tuning_gaps, recognizer.tuning_clear_gaps
    agreements = [(a, math.inf) for a in (0.0, 0.6, 0.7, 0.8, 0.9)] + [(a, c) for a in (0.6, 0.7, 0.8, 0.9)
                                                                       for c in clears]
    readings: dict[str, Intent] = {}

    class Memo:     # the sweep reads the same N-best strings thousands of times
        @staticmethod
        def parse(text: str, source: str = "text") -> Intent:
            if (text, source) not in readings:
                readings[text, source] = parser.parse(text, source=source)
            return readings[text, source]

    for gap, confidence, (agreement, clear), word_gap in itertools.product(gaps, (0.0, 0.9), agreements,
                                                                            recognizer.tuning_word_gaps):
        config = replace(ungated, motion_confidence=confidence, motion_agreement=agreement, clear_gap=clear,
                         word_gap=word_gap)
        exact = false_actions = positives = negatives = 0
        for command, recognition in rows:
            intent = parse_recognition(recognition, Memo, gap, config)
            if command.negative:
                negatives += 1
                false_actions += intent.acts
            else:
                positives += 1
                exact += matches(intent, command.expect)
        results.append({"motion_gap": gap, "motion_confidence": confidence, "motion_agreement": agreement,
                        "clear_gap": clear, "word_gap": word_gap,
                        "positives_exact": exact / max(positives, 1), "false_actions": false_actions,
                        "negatives": negatives})
    return {"sweep": results, "chosen": choose_gate(results), "utterances": len(rows), "recognitions": records}


def gate_examples(parser, rows) -> tuple[Any, Any, list[str], Any]:
    """(features, right, sentence, off_topic) of every tuning recognition whose ungated reading
    would act: `right` when that reading is the expected intent+slots."""
    import numpy as np

    from .action_gate import action_features
    from .speech import same_readings

    features, right, sentences, off_topic = [], [], [], []
    for command, recognition in rows:
        if not recognition.accepted:
            continue
        intent = parser.parse(recognition.text, source="speech")
        if not intent.acts:
            continue
        same = same_readings(parser, intent, recognition.details.get("alternatives") or [])
        features.append(action_features(recognition, intent.confidence, same))
        right.append(not command.negative and matches(intent, command.expect))
        sentences.append(command.text)
        off_topic.append(command.negative)
    return np.array(features), np.array(right), sentences, np.array(off_topic)


def fit_action_gate(parser, rows, acoustic_sha256: str, l2: float = 1.0,
                    fold_splits: int = GATE_FOLD_SPLITS) -> tuple[Any, dict[str, Any]]:
    """The learned gate (action_gate.py) of these tuning recognitions and how it does on them,
    out of fold: floors and threshold from `action_gate.choose_floors` (no tuning negative acts,
    wrong readings at most 1.5 % of the actions)."""
    from .action_gate import choose_floors, fit_logistic, out_of_fold

    features, right, sentences, off_topic = gate_examples(parser, rows)
    held_out = out_of_fold(features, right, sentences, l2=l2, repeats=fold_splits)
    floors, threshold = choose_floors(held_out, features, right, off_topic)
    gate = fit_logistic(features, right, l2)
    gate.threshold, gate.acoustic_sha256 = threshold, acoustic_sha256
    floors.apply_to(gate)
    positives = sum(not c.negative for c, _ in rows)
    acts = (held_out >= threshold) & floors.passes(features)
    report = {"utterances": len(rows), "positives": positives, "negatives": len(rows) - positives,
              "would_act": len(right), "threshold": threshold, "min_agreement": floors.agreement,
              "min_word_fit": floors.word_fit, "min_agreement_mass": floors.agreement_mass,
              "ungated_right_actions": int(right.sum()), "ungated_false_actions": int(off_topic.sum()),
              "right_actions": int((acts & right).sum()), "false_actions": int((acts & off_topic).sum()),
              "wrong_actions_on_positives": int((acts & ~right & ~off_topic).sum()),
              "weights": dict(zip(gate.features, [round(w, 3) for w in gate.weights]))}
    gate.provenance = {"fitted_on": "eval/tuning.yaml (tuning split)", "l2": l2, "fold_splits": fold_splits,
                       **{k: v for k, v in report.items() if k != "weights"}}
    return gate, report


def choose_gate(sweep: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The gate setting to use: the fewest actions on tuning negatives (none, where any setting
    reaches that), then the most exact positives. Settings that keep a clear-fit path
    (a finite clear_gap) are preferred: the tuning split is noisy speech at one SNR, where fits that
    good are rare, so it cannot value that path, while clearly spoken commands (high SNR: the
    ROS test's 20 dB, a close microphone) have short N-best lists that rarely agree 60 %."""
    fewest = min(r["false_actions"] for r in sweep)
    safe = [r for r in sweep if r["false_actions"] == fewest]     # 0 unless no setting reaches it
    safe = [r for r in safe if r.get("clear_gap", math.inf) < math.inf] or safe
    return max(safe, key=lambda r: (r["positives_exact"], r["motion_gap"]))


def format_table(summaries: Sequence[Summary], snr_db: float | None = None) -> str:
    header = ("| set | utterances | exact intent+slots | positives exact | false actions on negatives | "
              "wrong actions on positives | stop recall | WER | latency p50 / p95 / max (ms) |")
    lines = [header, "|" + "---|" * 9]
    for s in summaries:
        wer = "—" if math.isnan(s.wer) else f"{100 * s.wer:.1f}%"
        lines.append(f"| {s.name} | {s.utterances} | {100 * s.accuracy:.1f}% | {100 * s.accuracy_positive:.1f}% | "
                     f"{s.false_actions} / {s.negatives} | {s.misread_actions} | {100 * s.stop_recall:.0f}% | {wer} | "
                     f"{s.latency_p50_ms:.0f} / {s.latency_p95_ms:.0f} / {s.latency_max_ms:.0f} |")
    if snr_db is not None:
        lines.append(f"\nspeech: espeak-ng voices, room noise (pink + mains hum + 4-talker babble) at {snr_db:g} dB SNR")
    for s in summaries:
        if not math.isnan(s.accuracy_readback):
            lines.append(f"read-back, {s.name}: {100 * s.accuracy_readback:.1f}% right at once or after one 'yes' "
                         f"to the reading the gate held back; wrong offers on commands {s.wrong_offers_on_positives}, "
                         f"offers on negatives {s.offers_on_negatives} / {s.negatives} (each dropped by 'no' or the "
                         f"next utterance), negatives heard as a reply {s.negatives_heard_as_reply}")
    return "\n".join(lines)


# spoken answers to a read-back, and what they must be heard as
REPLY_CHECKS = (("yes", "confirm"), ("yes please", "confirm"), ("correct", "confirm"), ("confirm", "confirm"),
                ("that's right", "confirm"), ("go ahead", "confirm"), ("no", "cancel"), ("nope", "cancel"),
                ("wrong", "cancel"), ("no thanks", "cancel"))


def evaluate_replies(recognizer, voices: Sequence[tuple[str, int]] = DEFAULT_VOICES, snr_db: float | None = 10.0,
                     seed: int = 11) -> dict[str, Any]:
    """How the recogniser hears the answers to a read-back (REPLY_CHECKS) in each voice, with
    room noise of another seed than the command set's: heard as meant, not heard as a reply
    (the offer stays unanswered: nothing happens), or heard as the OTHER reply."""
    from .audio import RoomNoise, Voice
    from .confirmation import spoken_reply

    noise = RoomNoise(seed=seed) if snr_db is not None else None
    right = missed = opposite = 0
    for (name, speed), (text, meant) in itertools.product(voices, REPLY_CHECKS):
        heard = spoken_reply(recognizer.recognize(spoken_in_room(text, Voice(name, speed), noise, snr_db)))
        right += heard == meant
        missed += not heard
        opposite += bool(heard) and heard != meant
    return {"utterances": len(voices) * len(REPLY_CHECKS), "right": right, "not_heard_as_a_reply": missed,
            "heard_as_the_other_reply": opposite}


def save(summaries: Sequence[Summary], path: Path, extra: dict[str, Any] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summaries": [asdict(s) for s in summaries], **(extra or {})}, indent=1),
                    encoding="utf-8")
    return path


def speech_config(args) -> "Any":
    """SpeechConfig from the command line's --search, --reject-gap, --motion-gap and --set."""
    from dataclasses import fields

    from .speech import SpeechConfig

    types = {f.name: f.type for f in fields(SpeechConfig)}
    values: dict[str, Any] = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in types:
            raise SystemExit(f"--set: SpeechConfig has no field {name!r}")
        kind = str(types[name])
        values[name] = (value.lower() in ("1", "true", "yes")) if kind == "bool" else \
            int(value) if kind == "int" else float(value) if kind == "float" else value
    for name in ("reject_gap", "motion_gap", "search", "engine"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    return SpeechConfig(**values)


def main(argv: list[str] | None = None) -> int:
    """`fluorosam evaluate-language`: print the table and save it as JSON."""
    import argparse

    from .parser import CommandParser

    parser = argparse.ArgumentParser(prog="fluorosam evaluate-language",
                                     description="Evaluate command understanding (text, speech, latency).")
    parser.add_argument("--commands", type=Path, default=COMMANDS_PATH)
    parser.add_argument("--independent", type=Path, default=INDEPENDENT_PATH,
                        help="a second text set (no speech), printed as its own row; '' for none")
    parser.add_argument("--out", type=Path, default=Path("output/language/evaluation.json"))
    parser.add_argument("--no-speech", action="store_true", help="text only")
    parser.add_argument("--every", type=int, default=1, help="speech: every Nth utterance (1 = all)")
    parser.add_argument("--offset", type=int, default=0, help="speech: start of the every-Nth subset")
    parser.add_argument("--voices", default=",".join(f"{v}@{s}" for v, s in DEFAULT_VOICES),
                        help="espeak-ng voice@words-per-minute, comma separated")
    parser.add_argument("--snr", type=float, default=10.0, help="room noise SNR in dB; 'inf' for clean")
    parser.add_argument("--show-failures", type=int, default=15)
    parser.add_argument("--no-babble", action="store_true", help="room noise without the babble talkers")
    parser.add_argument("--reject-gap", type=float, default=None, help="override SpeechConfig.reject_gap")
    parser.add_argument("--motion-gap", type=float, default=None, help="override SpeechConfig.motion_gap")
    parser.add_argument("--engine", choices=("ctc", "pocketsphinx"), default=None,
                        help="speech engine: our CTC model (default) or pocketsphinx")
    parser.add_argument("--search", choices=("lm", "grammar"), default=None,
                        help="recogniser search: the command language model (default) or the strict JSGF grammar")
    parser.add_argument("--tune", action="store_true",
                        help="sweep the speech action gate on the tuning split (eval/tuning.yaml) instead")
    parser.add_argument("--fit-gate", type=Path, default=None, metavar="GATE_JSON",
                        help="fit the learned action gate of the CTC engine on the tuning split and write it "
                             "here (the bundled one: weights/command_gate.json)")
    parser.add_argument("--tuning-commands", type=int, default=100,
                        help="--tune / --fit-gate: commands drawn from the corpus grammar")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override any SpeechConfig field (repeatable), e.g. --set language_weight=10")
    args = parser.parse_args(argv)
    commands = load_commands(args.commands)
    command_parser = CommandParser()
    summaries = [evaluate_text(command_parser, commands)]
    if str(args.independent) not in ("", "."):
        summaries.append(evaluate_text(command_parser, load_commands(args.independent), "text (independent set)"))
    extra: dict[str, Any] = {"commands": len(commands),
                             "structures": len({c.expect.get("structure") for c in commands} - {None})}
    snr = None if math.isinf(args.snr) else args.snr
    if not args.no_speech:
        from .audio import espeak_available
        from .speech import make_recognizer

        if not espeak_available():
            print("espeak-ng is missing: speech evaluation skipped (scripts/setup.sh installs it)")
        else:
            recognizer = make_recognizer(speech_config(args))
            config = recognizer.config
            args.reject_gap = config.reject_gap
            voices = [(v.split("@")[0], int(v.split("@")[1])) for v in args.voices.split(",")]
            if args.fit_gate:
                return _fit_gate_main(command_parser, recognizer, voices, snr, args)
            if args.tune:
                tuned = tune_speech(command_parser, recognizer, voices, snr, commands=args.tuning_commands)
                for row in tuned["sweep"]:
                    print(f"motion_gap {row['motion_gap']:6.2f}  confidence {row['motion_confidence']:.1f}  "
                          f"agreement {row['motion_agreement']:.1f} (clear {row['clear_gap']:.2f}) "
                          f"word {row['word_gap']:g}: "
                          f"positives exact {100 * row['positives_exact']:.1f}%"
                          f", false actions {row['false_actions']}/{row['negatives']}")
                print(f"chosen ({tuned['utterances']} tuning utterances): {tuned['chosen']}")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(tuned, indent=1), encoding="utf-8")
                print(f"JSON: {args.out}")
                return 0
            subset = commands[args.offset::max(1, args.every)]
            summaries += evaluate_speech(command_parser, recognizer, subset, voices, snr, progress=True,
                                         babble=not args.no_babble)
            extra.update(speech_utterances=len(subset), recognizer_load_s=recognizer.load_s,
                         speech_config=asdict(config), voices=voices, snr_db=snr,
                         replies=evaluate_replies(recognizer, voices, snr))
    print(format_table(summaries, snr if not args.no_speech else None))
    if "replies" in extra:
        replies = extra["replies"]
        print(f"read-back replies ('yes', 'no', ...): {replies['right']} / {replies['utterances']} heard as meant, "
              f"{replies['heard_as_the_other_reply']} as the other reply")
    print(f"\n{extra['commands']} utterances over {extra['structures']} structures; JSON: {save(summaries, args.out, extra)}")
    for summary in summaries[-1:]:
        if summary.gaps_positive or summary.gaps_negative:
            def q(values, f):
                return sorted(values)[int(f * (len(values) - 1))] if values else math.nan
            print(f"acoustic fit (nat/frame, reject below {args.reject_gap}): commands p5 "
                  f"{q(summary.gaps_positive, 0.05):.2f} / p50 {q(summary.gaps_positive, 0.5):.2f}; "
                  f"negatives p50 {q(summary.gaps_negative, 0.5):.2f} / max {q(summary.gaps_negative, 1.0):.2f}")
    for summary in summaries:
        for failure in summary.failures[:args.show_failures]:
            print(f"  [{summary.name}] {failure['text']!r} heard {failure['heard']!r}: expected {failure['expect']}, "
                  f"got {failure['got']}")
    return 0


def _fit_gate_main(parser, recognizer, voices, snr_db, args) -> int:
    from .action_gate import file_sha256

    if not hasattr(recognizer, "weights_path"):
        raise SystemExit("--fit-gate: the learned gate is for the ctc engine")
    rows = tuning_recognitions(parser, recognizer, voices, snr_db, commands=args.tuning_commands)
    gate, report = fit_action_gate(parser, rows, file_sha256(recognizer.weights_path))
    gate.word_model_sha256 = recognizer.word_model_sha256
    gate.decoder_settings = recognizer.decoder_settings
    print(json.dumps(report, indent=1))
    print(f"gate: {gate.save(args.fit_gate)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"report": report, "recognitions": _recognition_records(rows)}, indent=1),
                        encoding="utf-8")
    return 0
