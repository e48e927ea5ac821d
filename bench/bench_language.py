"""Language benchmark: our parser and recogniser against peers measured in the same run.

Text: our CommandParser (grammar + MiniLM fallback) against an embedding-only peer (nearest
command of the evaluation set by MiniLM cosine, the usual "just embed it" design), per
utterance latency and exact intent+slots.
Speech: our CTC engine (our acoustic model + fused command word model, the default), pocketsphinx
with our command language model, and our first design, the strict JSGF grammar, against
pocketsphinx's generic language model (the default decoder), per utterance decode time and
exact words, on espeak-ng audio (clean, and with room noise at 10 dB SNR).

    scripts/run.sh python bench/bench_language.py [--speech N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from fluorosam_ros.language.evaluate import load_commands, matches
from fluorosam_ros.language.intents import Intent
from fluorosam_ros.language.numbers import normalize_command
from fluorosam_ros.language.parser import CommandParser


def _ms(times: list[float]) -> str:
    return f"p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms"


def bench_text() -> None:
    commands = load_commands()
    parser = CommandParser()
    parser.warm_up()
    ours, ours_ok = [], 0
    for c in commands:
        t = time.perf_counter()
        intent = parser.parse(c.text)
        ours.append((time.perf_counter() - t) * 1e3)
        ours_ok += matches(intent, c.expect)
    # peer: leave-one-out nearest neighbour over the other commands' embeddings
    encoder = parser.encoder
    vectors = encoder.encode([c.text or " " for c in commands]).numpy()
    peer, peer_ok = [], 0
    for i, c in enumerate(commands):
        encoder.clear_cache()
        t = time.perf_counter()
        query = encoder.encode([c.text or " "]).numpy()[0]
        sims = vectors @ query
        sims[i] = -2
        best = commands[int(sims.argmax())]
        peer.append((time.perf_counter() - t) * 1e3)
        expect = {k: v for k, v in best.expect.items() if k != "kind"}
        guess = Intent(best.kind, **{k: v for k, v in expect.items()}) if best.kind else None
        peer_ok += guess is not None and matches(guess, c.expect)
    n = len(commands)
    print(f"text, {n} utterances")
    print(f"  ours (grammar + fallback): {100 * ours_ok / n:.1f}% exact, {_ms(ours)}")
    print(f"  peer (MiniLM nearest command): {100 * peer_ok / n:.1f}% exact, {_ms(peer)}")
    print(f"  ratio: median latency ours/peer = {statistics.median(ours) / statistics.median(peer):.2f}")


def bench_speech(count: int) -> None:
    from pocketsphinx import Decoder

    from fluorosam_ros.language.audio import RoomNoise, Voice, mix_at_snr, pad, synthesize
    from fluorosam_ros.language.speech import SpeechConfig, SpeechRecognizer, make_recognizer

    commands = [c for c in load_commands() if c.text.strip() and c.kind != "not_understood"][::7][:count]
    noise = RoomNoise(seed=0)
    clean = [pad(synthesize(c.text, Voice("en-us", 150))) for c in commands]
    noisy = [mix_at_snr(a, noise.segment(len(a)), 10.0) for a in clean]
    systems = {"ours (CTC engine)": make_recognizer(SpeechConfig(engine="ctc")),
               "ours (pocketsphinx + command language model)": SpeechRecognizer(),
               "ours, first design (JSGF grammar)": SpeechRecognizer(config=SpeechConfig(search="grammar", nbest=0,
                                                                                             language_weight=6.5))}
    generic = Decoder(loglevel="FATAL", dither=True, seed=7)

    def peer(audio):
        generic.start_utt()
        generic.process_raw(audio.tobytes(), False, True)
        generic.end_utt()
        hyp = generic.hyp()
        return hyp.hypstr if hyp else ""

    n = len(commands)
    for condition, audios in (("clean", clean), ("room noise 10 dB SNR", noisy)):
        print(f"speech, {n} utterances ({condition}, en-us@150)")
        medians = {}
        for name, recognizer in list(systems.items()) + [("peer (pocketsphinx generic LM)", None)]:
            times, exact = [], 0
            for c, audio in zip(commands, audios):
                t = time.perf_counter()
                text = recognizer.recognize(audio).raw_text if recognizer is not None else peer(audio)
                times.append((time.perf_counter() - t) * 1e3)
                exact += normalize_command(text) == normalize_command(c.text)
            medians[name] = statistics.median(times)
            print(f"  {name}: {exact}/{n} exact words, {_ms(times)}")
        peer_name = "peer (pocketsphinx generic LM)"
        for ours in ("ours (CTC engine)", "ours (pocketsphinx + command language model)"):
            print(f"  ratio: median decode time {ours}/peer = {medians[ours] / medians[peer_name]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speech", type=int, default=20, help="utterances for the speech part (0: skip)")
    args = parser.parse_args()
    bench_text()
    if args.speech:
        bench_speech(args.speech)


if __name__ == "__main__":
    main()
