"""Synthetic training speech: our command corpus spoken by many synthetic voices, then made
to sound like an operating room.

Voices. Only voices the evaluation does not use: espeak-ng's other English accents (Scottish,
Lancastrian, RP, West Midlands, Caribbean, New York) each with a random one of espeak-ng's
speaker variants, speed and pitch, and flite's voices where flite is installed (kal, awb, rms,
slt: other engines, closer to recorded speech). The evaluation's voices (espeak-ng "en-us" and
"en-gb") are never trained on, so its figures measure unseen speakers.

Text. Sentences drawn from `speech.corpus_rules` (what the parser understands; never the
evaluation set) and, for a share of the utterances, random dictionary words (off-topic talk:
the model must write what it hears, not a command it expects).

Room. Each drawn example is perturbed afresh: speed, gain, leading/trailing silence, a
microphone's colouring, reverberation and noise from a bank of our own (coloured noise, mains
hum, monitor beeps, talkers saying random words) at a random SNR. The bank is built here,
with other voices and words than `audio.RoomNoise`, the evaluation's noise.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, mix_at_snr, read_wav, resample, spelled_for_speech
from .features import CLEAN_DITHER_LSB
from .transcript import spoken_transcript

log = logging.getLogger(__name__)

ESPEAK_ACCENTS = ("en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
HELD_OUT_ACCENTS = ("en-us", "en-gb")       # the evaluation's voices: never trained on
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


_VARIANT_FILE = re.compile(r"!v/(\S+)\s*$")
_NOT_A_SPEAKER = ("whisper", "fast")      # inaudible at 10 dB, or a timing test
# How a variant is named on espeak-ng's command line: "files" (the File column, "!v/adam" ->
# "adam": what `-v accent+variant` selects) or "listed" (the VoiceName column, "Adam", as runs
# 1-9 of the bundled model were trained: espeak-ng quietly speaks the plain voice for the 60 of
# 101 such names it does not find). "listed" exists to reproduce those runs.
VARIANT_NAMINGS = ("files", "listed")


def espeak_variants(naming: str = "files") -> list[str]:
    """espeak-ng's speaker variants (timbre, pitch range, breathiness), named as `naming` says
    (VARIANT_NAMINGS)."""
    if naming not in VARIANT_NAMINGS:
        raise ValueError(f"variant naming {naming!r} is not one of {VARIANT_NAMINGS}")
    try:
        listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                                 timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    if naming == "listed":
        names = [line.split()[3] for line in listing.splitlines()[1:] if len(line.split()) >= 4]
        return [n for n in names if "whisper" not in n.lower()]
    names = []
    for line in listing.splitlines()[1:]:
        match = _VARIANT_FILE.search(line)
        if match and not any(word in match.group(1).lower() for word in _NOT_A_SPEAKER):
            names.append(match.group(1))
    return names


def flite_available() -> bool:
    return shutil.which("flite") is not None


@dataclass(frozen=True)
class SynthVoice:
    """One synthetic speaker: the engine, its voice and how it speaks."""

    engine: str               # "espeak" or "flite"
    name: str
    speed: float              # espeak: words per minute; flite: duration stretch
    pitch: int = 50

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}@{self.speed:g}"


def draw_voice(rng: np.random.Generator, variants: list[str], flite_share: float) -> SynthVoice:
    if flite_share > 0 and rng.random() < flite_share:
        return SynthVoice("flite", str(rng.choice(FLITE_VOICES)), round(float(rng.uniform(0.8, 1.3)), 2))
    accent = str(rng.choice(ESPEAK_ACCENTS))
    if variants and rng.random() < 0.8:
        accent += "+" + str(rng.choice(variants))
    return SynthVoice("espeak", accent, int(rng.integers(110, 221)), int(rng.integers(15, 86)))


def speak(text: str, voice: SynthVoice) -> np.ndarray:
    """int16 samples at 16 kHz of `text` in `voice`."""
    if voice.engine == "espeak":
        result = subprocess.run(["espeak-ng", "-v", voice.name, "-s", str(int(voice.speed)), "-p", str(voice.pitch),
                                 "--stdout", text], capture_output=True, timeout=30)
        if result.returncode != 0 or not result.stdout:
            raise RuntimeError(f"espeak-ng failed for {voice.label}: {result.stderr.decode(errors='replace')}")
        samples, rate = read_wav(result.stdout)
    elif voice.engine == "flite":
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            result = subprocess.run(["flite", "-voice", voice.name, "--setf", f"duration_stretch={voice.speed}",
                                     "-t", text, "-o", out.name], capture_output=True, timeout=30)
            if result.returncode != 0:
                raise RuntimeError(f"flite failed for {voice.label}: {result.stderr.decode(errors='replace')}")
            samples, rate = read_wav(Path(out.name))
    else:
        raise ValueError(f"unknown engine {voice.engine!r}")
    return resample(samples, rate, SAMPLE_RATE)


def dictionary_words(limit_letters: int = 9) -> list[str]:
    """Plain English words from pocketsphinx's dictionary (for off-topic sentences)."""
    from ..speech import _model_dictionary

    words = []
    for line in _model_dictionary().read_text(encoding="utf-8", errors="replace").splitlines():
        word = line.split(" ", 1)[0]
        if re.fullmatch(r"[a-z]{2,%d}" % limit_letters, word):
            words.append(word)
    return words


def draw_sentences(count: int, seed: int, off_topic_share: float = 0.12) -> list[str]:
    """`count` training sentences: command corpus, with a share of random-word talk."""
    from ..speech import corpus_sentences

    rng = np.random.default_rng(seed)
    commands = [" ".join(words) for words in corpus_sentences(count=count, seed=seed)]
    words = dictionary_words()
    sentences = []
    for command in commands:
        if rng.random() < off_topic_share:
            sentences.append(" ".join(rng.choice(words, size=int(rng.integers(2, 7)))))
        else:
            sentences.append(command)
    return sentences


def _speak_job(job: tuple[str, SynthVoice]) -> np.ndarray | None:
    text, voice = job
    try:
        return speak(text, voice)
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
        log.warning("synthesis failed (%s): %s", voice.label, error)
        return None


@dataclass
class SpokenCorpus:
    """Clean synthetic utterances with their transcripts (concatenated int16 + offsets)."""

    samples: np.ndarray
    offsets: np.ndarray
    transcripts: list[str]
    voices: list[str]

    def __len__(self) -> int:
        return len(self.transcripts)

    def audio(self, index: int) -> np.ndarray:
        return self.samples[self.offsets[index]:self.offsets[index + 1]]

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, samples=self.samples, offsets=self.offsets, transcripts=np.array(self.transcripts),
                 voices=np.array(self.voices))
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "SpokenCorpus":
        with np.load(path) as data:
            return cls(data["samples"], data["offsets"], [str(t) for t in data["transcripts"]],
                       [str(v) for v in data["voices"]])


def synthesize_corpus(count: int, seed: int, workers: int = 2, flite_share: float = 0.3,
                      off_topic_share: float = 0.12, progress: bool = True,
                      variant_naming: str = "files", spelled_share: float = 0.85) -> SpokenCorpus:
    """Speak `count` drawn sentences in drawn training voices (seeded). `spelled_share`: how
    often an abbreviation people spell ("AP") is spoken spelled (`audio.spelled_for_speech`);
    runs 1-10 had 0, and heard "ap" rhyme with "cap"."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed + 1)
    variants = espeak_variants(variant_naming)
    if not flite_available():
        log.warning("flite is not installed: espeak-ng voices only (apt-get install flite)")
        flite_share = 0.0
    sentences = draw_sentences(count, seed, off_topic_share)
    spelling = np.random.default_rng(seed + 2)
    jobs = [(text, draw_voice(rng, variants, flite_share)) for text in sentences]
    said = [(spelled_for_speech(text, spelled_share, spelling), voice) for text, voice in jobs]
    with get_context("spawn" if os.name == "nt" else "fork").Pool(max(1, workers)) as pool:
        spoken = list(tqdm(pool.imap(_speak_job, said, chunksize=16), total=len(jobs), desc="speaking",
                           unit="utt", disable=not progress))
    kept = [(spoken_transcript(text), voice.label, audio) for (text, voice), audio in zip(jobs, spoken)
            if audio is not None and audio.size and spoken_transcript(text)]
    lengths = np.array([0] + [len(a) for _, _, a in kept])
    return SpokenCorpus(np.concatenate([a for _, _, a in kept]).astype(np.int16), np.cumsum(lengths),
                        [t for t, _, _ in kept], [v for _, v, _ in kept])


# ------------------------------------------------------------------------------------------
# The room
# ------------------------------------------------------------------------------------------

def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f^exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0.0
    return _unit(np.fft.irfft(spectrum, n))


def noise_bank(seconds: float, rng: np.random.Generator, talkers: int = 3) -> dict[str, np.ndarray]:
    """Unit-RMS noise beds of each kind, `seconds` long."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    bank = {"steady": coloured_noise(n, float(rng.uniform(0.0, 2.0)), rng)}
    mains = float(rng.choice([50.0, 60.0]))
    bank["hum"] = _unit(sum(rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3))
                            for k in range(1, 6)) + 0.3 * coloured_noise(n, 1.0, rng))
    beeps = np.zeros(n)
    for start in range(0, n, int(rng.uniform(0.6, 1.2) * SAMPLE_RATE)):
        length = int(0.12 * SAMPLE_RATE)
        beeps[start:start + length] = np.sin(2 * np.pi * rng.uniform(600, 1800) * t[:min(length, n - start)])
    bank["beeps"] = _unit(beeps + 0.05 * coloured_noise(n, 1.0, rng))
    if shutil.which("espeak-ng"):
        words, variants = dictionary_words(), espeak_variants()
        chatter = np.zeros(n)
        for _ in range(talkers):
            voice = draw_voice(rng, variants, 0.3 if flite_available() else 0.0)
            speech = _speak_job((" ".join(rng.choice(words, size=int(seconds * 2.5))), voice))
            if speech is not None and speech.size:
                chatter += np.roll(_unit(np.resize(speech.astype(np.float64), n)), int(rng.integers(0, n)))
        bank["talkers"] = _unit(chatter + 0.1 * coloured_noise(n, 1.0, rng))
    return bank


@dataclass(frozen=True)
class AugmentConfig:
    noise_p: float = 0.85
    snr_db: tuple[float, float] = (-3.0, 30.0)
    speed_p: float = 0.5
    speed: tuple[float, float] = (0.88, 1.12)
    reverb_p: float = 0.3
    colour_p: float = 0.3
    gain_db: tuple[float, float] = (-30.0, 0.0)     # peak level relative to full scale
    pad_s: tuple[float, float] = (0.05, 0.4)


class RoomAugmenter:
    """Draws an operating-room version of a clean utterance (all randomness from one seed)."""

    def __init__(self, seed: int = 0, config: AugmentConfig = AugmentConfig(), bank_seconds: float = 40.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.config = config
        self.bank = noise_bank(bank_seconds, self.rng)

    def _noise(self, n: int) -> np.ndarray:
        kinds = list(self.bank)
        weights = self.rng.dirichlet(np.ones(len(kinds)) * 0.7)
        out = np.zeros(n)
        for kind, weight in zip(kinds, weights):
            bed = self.bank[kind]
            start = int(self.rng.integers(0, max(1, len(bed) - n)))
            out += weight * np.resize(bed[start:start + n], n)
        return _unit(out)

    def _reverb(self, x: np.ndarray) -> np.ndarray:
        from scipy.signal import fftconvolve

        rt60 = self.rng.uniform(0.15, 0.7)
        length = int(rt60 * SAMPLE_RATE)
        decay = np.exp(-6.9 * np.arange(length) / length) * self.rng.standard_normal(length)
        decay[0] = 1.0 / self.rng.uniform(0.2, 1.0)     # direct path against the room's tail
        wet = fftconvolve(x, decay)[:len(x)]
        return wet * (np.abs(x).max() / (np.abs(wet).max() + 1e-9))

    def _colour(self, x: np.ndarray) -> np.ndarray:
        from scipy.signal import butter, sosfilt

        if self.rng.random() < 0.5:
            sos = butter(2, self.rng.uniform(80, 400), "highpass", fs=SAMPLE_RATE, output="sos")
        else:
            sos = butter(2, self.rng.uniform(3000, 7500), "lowpass", fs=SAMPLE_RATE, output="sos")
        return sosfilt(sos, x)

    def __call__(self, clean: np.ndarray) -> np.ndarray:
        from scipy.signal import resample_poly

        c, rng = self.config, self.rng
        x = clean.astype(np.float64)
        if rng.random() < c.speed_p:
            x = resample_poly(x, 50, int(round(50 * rng.uniform(*c.speed))))
        if rng.random() < c.reverb_p:
            x = self._reverb(x)
        if rng.random() < c.colour_p:
            x = self._colour(x)
        x = x / (np.abs(x).max() + 1e-9) * 32767 * 10 ** (rng.uniform(*c.gain_db) / 20)
        x = np.concatenate([np.zeros(int(rng.uniform(*c.pad_s) * SAMPLE_RATE)), x,
                            np.zeros(int(rng.uniform(*c.pad_s) * SAMPLE_RATE))])
        if rng.random() < c.noise_p:
            return mix_at_snr(x, self._noise(len(x)), float(rng.uniform(*c.snr_db)))
        return np.clip(np.round(x + rng.normal(0, CLEAN_DITHER_LSB, len(x))), -32768, 32767).astype(np.int16)
