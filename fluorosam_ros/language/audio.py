"""Test audio without a microphone: espeak-ng synthesis at 16 kHz PCM16, seeded room noise, SNR mixing.

Room noise is generated here, never downloaded: pink noise (the broadband hiss of ventilation
and equipment), a mains hum with harmonics, and babble made of several espeak-ng voices
saying random words at once (the team talking in the background). Every part is seeded.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
BABBLE_WORDS = ("patient", "table", "coffee", "monday", "pressure", "suction", "sponge", "count",
                "ready", "theatre", "nurse", "anaesthesia", "music", "phone", "tomorrow", "lunch",
                "weekend", "saline", "gloves", "thanks", "okay", "later", "meeting", "number",
                "weather", "parking", "train", "holiday", "report", "schedule")


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def resample(samples: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling to `rate_out`, as int16 (clipped)."""
    from scipy.signal import resample_poly

    x = np.asarray(samples, dtype=np.float64)
    if rate_in != rate_out:
        g = gcd(int(rate_in), int(rate_out))
        x = resample_poly(x, rate_out // g, rate_in // g)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def read_wav(data: bytes | Path | str) -> tuple[np.ndarray, int]:
    """(mono int16 samples, sample rate) of a PCM16 WAV file or bytes (espeak-ng's streamed
    header with a bogus frame count included)."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else open(data, "rb")
    with stream, wave.open(stream) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return samples.astype(np.int16), rate


def write_wav(path: Path | str, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    path = Path(path)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice and speaking rate (words per minute)."""

    name: str = "en-us"
    speed_wpm: int = 150
    pitch: int = 50

    @property
    def label(self) -> str:
        return f"{self.name}@{self.speed_wpm}"


# Abbreviations people spell out: "AP" is "ay pee", "RAO" "ar ay oh". espeak-ng speaks them so
# when they are written in capitals among other words, but reads the lower-case word as a word
# ("ap" rhymes with "cap", "rao" with "cow"), and the command grammar is written in lower case.
SPELLED_ABBREVIATIONS = ("ap", "pa", "rao", "lao", "gi")
_SPELLED = re.compile(r"\b(" + "|".join(SPELLED_ABBREVIATIONS) + r")\b")


def spelled_for_speech(text: str, share: float = 1.0, rng: np.random.Generator | None = None) -> str:
    """`text` with SPELLED_ABBREVIATIONS in capitals, each with probability `share` (drawn from
    `rng`; all of them when `share` is 1), so that espeak-ng spells them as a speaker would."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share is a probability, in [0, 1]; got {share}")
    if 0.0 < share < 1.0 and rng is None:
        raise ValueError("a share between 0 and 1 is drawn: pass rng")

    def capitalised(match: re.Match) -> str:
        return match.group(1).upper() if share >= 1.0 or rng.random() < share else match.group(1)

    return _SPELLED.sub(capitalised, text) if share > 0 else text


def synthesize(text: str, voice: Voice = Voice(), rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speak `text` with espeak-ng; int16 mono samples at `rate`."""
    if not espeak_available():
        raise SynthesisError("espeak-ng is not installed (scripts/setup.sh installs it)")
    command = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed_wpm), "-p", str(voice.pitch),
               "--stdout", text]
    result = subprocess.run(command, capture_output=True, timeout=30)
    if result.returncode != 0 or not result.stdout:
        raise SynthesisError(f"espeak-ng failed: {result.stderr.decode(errors='replace').strip()}")
    samples, rate_in = read_wav(result.stdout)
    return resample(samples, rate_in, rate)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise by spectral shaping of white noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def babble(seconds: float, rng: np.random.Generator, talkers: int = 4, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-RMS background chatter: `talkers` espeak-ng voices saying random words, summed."""
    n = int(seconds * rate)
    out = np.zeros(n)
    voices = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
    for t in range(talkers):
        words = " ".join(rng.choice(BABBLE_WORDS, size=int(seconds * 3)))
        voice = Voice(voices[t % len(voices)], int(rng.integers(130, 190)), int(rng.integers(20, 80)))
        speech = synthesize(words, voice, rate).astype(np.float64)
        offset = int(rng.integers(0, rate))
        speech = np.roll(np.resize(speech, n), offset)
        out += speech / (np.sqrt(np.mean(speech ** 2)) + 1e-12)
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-12)


class RoomNoise:
    """A seeded operating-room noise bed (pink + hum + babble) to draw segments from."""

    def __init__(self, seed: int = 0, seconds: float = 20.0, rate: int = SAMPLE_RATE,
                 babble_weight: float = 0.6, use_babble: bool = True) -> None:
        rng = np.random.default_rng(seed)
        n = int(seconds * rate)
        t = np.arange(n) / rate
        hum = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
        hum = hum / np.sqrt(np.mean(hum ** 2))
        bed = pink_noise(n, rng) + 0.3 * hum
        if use_babble and espeak_available() and babble_weight > 0:
            bed = bed / np.sqrt(np.mean(bed ** 2)) * (1 - babble_weight) + babble_weight * babble(seconds, rng)
        self.samples = bed / (np.sqrt(np.mean(bed ** 2)) + 1e-12)
        self.rng = np.random.default_rng(seed + 1)

    def segment(self, n: int) -> np.ndarray:
        start = int(self.rng.integers(0, max(1, len(self.samples) - n)))
        return np.resize(self.samples[start:start + n], n)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Speech plus noise scaled so that speech power / noise power = `snr_db` (speech power
    measured over its active part, as is usual for SNR of utterances with pauses)."""
    s = np.asarray(speech, dtype=np.float64)
    active = np.abs(s) > 0.02 * np.abs(s).max() if s.size and np.abs(s).max() > 0 else np.ones_like(s, bool)
    p_speech = np.mean(s[active] ** 2) if active.any() else 0.0
    p_noise = np.mean(np.asarray(noise, np.float64) ** 2) + 1e-12
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return np.clip(np.round(s + scale * noise), -32768, 32767).astype(np.int16)


def pad(samples: np.ndarray, lead_s: float = 0.3, tail_s: float = 0.3, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Silence around an utterance, as a microphone would record it."""
    return np.concatenate([np.zeros(int(lead_s * rate), np.int16), np.asarray(samples, np.int16),
                           np.zeros(int(tail_s * rate), np.int16)])
