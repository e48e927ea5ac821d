"""A noise-robust front end for command speech, applied to the PCM before pocketsphinx.

Everything is estimated from the utterance itself (the command node only has the audio it
received; the test harness's injected noise is never looked at):
- `detect_hum` / `notch_hum`: mains hum (50 or 60 Hz and harmonics) is found as narrow,
  steady spectral peaks at multiples of one of the two mains frequencies, then notched out;
- `spectral_gain`: a Wiener-type gain per STFT bin, with the noise spectrum averaged over
  the utterance's quietest frames (the pauses around and between words) and the a-priori
  SNR smoothed over time ("decision directed"), which keeps the residual noise from turning
  into the isolated tonal blips ("musical noise") that plain subtraction leaves behind.
  It runs only when the quiet frames are steady in level (`noise_unsteadiness_db`).

Measured (bench/bench_speech_frontend.py, every 8th command x 4 voices, 10 dB SNR): the gain
raised exact intent+slots from 44 % to 52 % in steady noise (pink + hum) but dropped it from
32 % to 16 % under babble (the steady bed removed, the background talkers stand out and are
decoded as words), hence the steadiness check. At 20 dB in steady noise it cost 68 % -> 58 %
(61 % with a -6 dB floor): it distorts speech more than it removes noise there, so it is off by
default (`SpeechConfig.denoise`); gating it on an SNR estimate as well is the next step. The hum
notch and a 100 Hz high-pass made no difference (pocketsphinx's filterbank starts at 133 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAINS_HZ = (50.0, 60.0)


@dataclass(frozen=True)
class FrontEnd:
    """Which stages run, and their settings (see `SpeechConfig.denoise*`)."""

    hum_notch: bool = True
    spectral: bool = True
    floor_db: float = -12.0            # the gain never goes below this (keeps some noise: less distortion)
    oversubtract: float = 1.0          # noise estimate scaled by this before the gain
    quiet_share: float = 0.2           # share of frames (lowest energy) that estimate the noise
    smoothing: float = 0.96            # decision-directed a-priori SNR smoothing (0: none)
    # the gain only where the noise is steady: measured, it helps recognition in steady noise and
    # hurts it badly under babble (removing the steady bed leaves the talkers exposed)
    max_unsteadiness_db: float = 1.7   # see `noise_unsteadiness_db`; inf: always


def _peak_prominence_db(power: np.ndarray, freqs: np.ndarray, f: float) -> float:
    """Peak power within 1.5 Hz of `f` over the median of its neighbourhood (3..15 Hz away), dB."""
    distance = np.abs(freqs - f)
    peak = power[distance <= 1.5]
    around = power[(distance >= 3.0) & (distance <= 15.0)]
    if peak.size == 0 or around.size == 0:
        return 0.0
    return float(10 * np.log10((peak.max() + 1e-20) / (np.median(around) + 1e-20)))


def detect_hum(samples: np.ndarray, rate: int, harmonics: int = 3, threshold_db: float = 10.0) -> float | None:
    """The mains frequency (50.0 or 60.0) whose first `harmonics` multiples all stand out of the
    spectrum by `threshold_db` on average (and each by at least half that), else None.

    Requiring every low harmonic, the fundamental included, keeps a steady voice pitch from
    passing as hum: a voice has no energy at 50-60 Hz."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < rate // 2:
        return None
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    best, best_score = None, threshold_db
    for mains in MAINS_HZ:
        scores = [_peak_prominence_db(power, freqs, k * mains) for k in range(1, harmonics + 1)]
        if min(scores) >= threshold_db / 2 and np.mean(scores) >= best_score:
            best, best_score = mains, float(np.mean(scores))
    return best


def notch_hum(samples: np.ndarray, rate: int, mains: float, harmonics: int = 6, q: float = 30.0) -> np.ndarray:
    """`samples` with narrow notches at `mains` and its harmonics below 1 kHz (zero phase)."""
    from scipy.signal import filtfilt, iirnotch

    x = np.asarray(samples, dtype=np.float64)
    for k in range(1, harmonics + 1):
        f = k * mains
        if f >= min(1000.0, rate / 2 - 1):
            break
        b, a = iirnotch(f, q, fs=rate)
        x = filtfilt(b, a, x)
    return x


def noise_spectrum(power: np.ndarray, quiet_share: float = 0.2, min_frames: int = 5) -> np.ndarray:
    """Per-bin noise power: the mean periodogram of the quietest `quiet_share` of the frames
    (power: bins x frames). Averaging raw periodograms of whole frames (not a per-bin minimum)
    keeps the estimate unbiased for steady noise."""
    energy = power.sum(axis=0)
    count = min(power.shape[1], max(min_frames, int(round(quiet_share * power.shape[1]))))
    quiet = np.argsort(energy)[:count]
    return power[:, quiet].mean(axis=1)


def noise_unsteadiness_db(power: np.ndarray, freqs: np.ndarray, quiet_share: float = 0.3) -> float:
    """How much the level of the quiet frames varies (std in dB of their 300 Hz - 3 kHz energy).

    Steady noise (fans, hiss) stays within ~1-1.5 dB from frame to frame; talk in the background
    (babble) rises and falls with its syllables (measured on the evaluation's synthetic room
    noise at 10 dB SNR: 0.5-1.4 dB without babble, 1.9-3.0 dB with it, 5th-95th percentiles)."""
    band = (freqs >= 300) & (freqs <= 3000)
    level = np.sort(10 * np.log10(power[band].sum(axis=0) + 1e-9))
    quiet = level[:max(5, int(quiet_share * level.size))]
    return float(quiet.std())


def spectral_gain(power: np.ndarray, noise: np.ndarray, floor_db: float = -12.0, oversubtract: float = 1.0,
                  smoothing: float = 0.96) -> np.ndarray:
    """Wiener gains (bins x frames) with a decision-directed a-priori SNR and a gain floor."""
    floor = 10 ** (floor_db / 20)
    noise = oversubtract * noise[:, None] + 1e-12
    posterior = power / noise                                  # a-posteriori SNR per bin and frame
    gains = np.empty_like(power)
    previous = np.zeros(power.shape[0])                        # |clean estimate|^2 / noise, last frame
    for t in range(power.shape[1]):
        prior = smoothing * previous + (1 - smoothing) * np.maximum(posterior[:, t] - 1.0, 0.0)
        gain = np.maximum(prior / (1.0 + prior), floor)
        gains[:, t] = gain
        previous = gain ** 2 * posterior[:, t]
    return gains


def suppress_noise(samples: np.ndarray, rate: int, front: FrontEnd = FrontEnd()) -> np.ndarray:
    """STFT -> `spectral_gain` with `noise_spectrum` -> inverse STFT; float samples, same length."""
    from scipy.signal import istft, stft

    x = np.asarray(samples, dtype=np.float64)
    nperseg = 512 if rate >= 16000 else 256
    freqs, _, spectrum = stft(x, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    power = np.abs(spectrum) ** 2
    if noise_unsteadiness_db(power, freqs) > front.max_unsteadiness_db:
        return x
    noise = noise_spectrum(power, front.quiet_share)
    gains = spectral_gain(power, noise, front.floor_db, front.oversubtract, front.smoothing)
    _, y = istft(spectrum * gains, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    return np.pad(y, (0, max(0, x.size - y.size)))[:x.size]


def enhance(samples: np.ndarray, rate: int, front: FrontEnd = FrontEnd()) -> np.ndarray:
    """The front end's stages in order (hum notch, spectral gain); int16 out."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < rate // 10:
        return np.asarray(samples, dtype=np.int16)
    if front.hum_notch:
        mains = detect_hum(x, rate)
        if mains is not None:
            x = notch_hum(x, rate, mains)
    if front.spectral:
        x = suppress_noise(x, rate, front)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)
