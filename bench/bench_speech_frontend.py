"""Speech front end: compare SpeechConfig variants on the SAME noisy audio.

The audio is made exactly as `fluorosam evaluate-language` makes it (same voices, same order,
same seeded RoomNoise, so the same segments) and cached in /tmp, so each variant costs only
its decoding. Each variant is "label:field=value;field=value" (SpeechConfig fields).

    scripts/run.sh python bench/bench_speech_frontend.py --every 8 --snr 10 \
        --variant base: --variant dn:denoise=true
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from fluorosam_ros.language.evaluate import DEFAULT_VOICES, _outcome, load_commands, summarize
from fluorosam_ros.language.numbers import normalize_command


def make_audio(commands, voices, snr_db: float | None, babble: bool, cache: Path) -> list[np.ndarray]:
    """The evaluation's audio (same loop order as evaluate_speech), cached."""
    from fluorosam_ros.language.audio import RoomNoise, Voice, mix_at_snr, pad, synthesize

    key = hashlib.sha256(repr(([c.text for c in commands], voices, snr_db, babble)).encode()).hexdigest()[:12]
    path = cache / f"audio_{key}.npz"
    if path.is_file():
        data = np.load(path)
        return [data[f"a{i}"] for i in range(len(data.files))]
    noise = RoomNoise(seed=0, use_babble=babble) if snr_db is not None else None
    clips = []
    for name, speed in voices:
        for command in commands:
            audio = pad(synthesize(command.text, Voice(name, speed)))
            if noise is not None:
                audio = mix_at_snr(audio, noise.segment(len(audio)), snr_db)
            clips.append(audio)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"a{i}": a for i, a in enumerate(clips)})
    return clips


def parse_variant(spec: str):
    from fluorosam_ros.language.speech import SpeechConfig

    label, _, body = spec.partition(":")
    types = {f.name: str(f.type) for f in fields(SpeechConfig)}
    values = {}
    for item in filter(None, body.split(";")):
        name, _, value = item.partition("=")
        kind = types[name]
        values[name] = (value.lower() in ("1", "true", "yes")) if kind == "bool" else \
            int(value) if kind == "int" else float(value) if kind == "float" else value
    return label, SpeechConfig(**values)


def run_variant(config, commands, voices, clips, parser):
    from fluorosam_ros.language.speech import SpeechRecognizer, parse_recognition

    recognizer = SpeechRecognizer(config=config)
    outcomes = []
    pairs = [(v, c) for v in voices for c in commands]
    for (voice, command), audio in zip(pairs, clips):
        started = time.perf_counter()
        recognition = recognizer.recognize(audio)
        intent = parse_recognition(recognition, parser, config.motion_gap, config)
        latency = (time.perf_counter() - started) * 1e3
        hypothesis = normalize_command(recognition.raw_text if recognition.accepted else "")
        outcome = _outcome(command, intent, latency, f"{voice[0]}@{voice[1]}", recognition.raw_text,
                           normalize_command(command.text), hypothesis)
        outcome.gap = recognition.gap
        outcomes.append(outcome)
    return summarize("speech", outcomes), outcomes


def main() -> None:
    from fluorosam_ros.language.parser import CommandParser

    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--no-babble", action="store_true")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fluorosam_frontend"))
    args = ap.parse_args()
    commands = [c for c in load_commands()[args.offset::args.every] if c.text.strip()]
    voices = list(DEFAULT_VOICES)
    snr = None if math.isinf(args.snr) else args.snr
    clips = make_audio(commands, voices, snr, not args.no_babble, args.cache)
    parser = CommandParser()
    parser.warm_up()
    print(f"{len(clips)} utterances, snr {args.snr:g} dB, babble {not args.no_babble}")
    print("| variant | exact | positives exact | false actions | misread | WER | p50 / p95 ms |")
    for spec in args.variant or ["base:"]:
        label, config = parse_variant(spec)
        s, _ = run_variant(config, commands, voices, clips, parser)
        print(f"| {label} | {100 * s.accuracy:.1f}% | {100 * s.accuracy_positive:.1f}% "
              f"| {s.false_actions}/{s.negatives}"
              f" | {s.misread_actions} | {100 * s.wer:.1f}% | {s.latency_p50_ms:.0f} / {s.latency_p95_ms:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
