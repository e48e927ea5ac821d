"""The speech front end (denoise.py): hum detection and notch, spectral noise suppression, config."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fluorosam_ros.language.denoise import (FrontEnd, detect_hum, enhance, noise_spectrum, notch_hum,
                                            suppress_noise)

RATE = 16000


def _time(seconds: float = 3.0) -> np.ndarray:
    return np.arange(int(seconds * RATE)) / RATE


def _hum(mains: float, t: np.ndarray) -> np.ndarray:
    return sum(np.sin(2 * np.pi * mains * k * t + k) / k for k in (1, 2, 3))


def _band_power(x: np.ndarray, f: float, width: float = 2.0) -> float:
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    return float(power[np.abs(freqs - f) <= width].sum())


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_detect_hum_tells_50_from_60_hz(mains):
    t = _time()
    noise = 1000 * np.random.default_rng(1).standard_normal(t.size)
    assert detect_hum(noise + 300 * _hum(mains, t), RATE) == mains
    assert detect_hum(noise, RATE) is None


def test_a_steady_voice_pitch_is_not_hum():
    """Harmonics of a 120 Hz voice hit 120/240/360 Hz (60 Hz multiples) but nothing at 60 Hz."""
    t = _time()
    voice = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8))
    noise = 300 * np.random.default_rng(2).standard_normal(t.size)
    assert detect_hum(2000 * voice + noise, RATE) is None


def test_notch_removes_hum_and_keeps_a_tone():
    t = _time()
    tone = 2000 * np.sin(2 * np.pi * 440 * t)
    x = tone + 1000 * _hum(50.0, t)
    y = notch_hum(x, RATE, 50.0)
    for f in (50.0, 100.0, 150.0):
        assert _band_power(y, f) < 1e-2 * _band_power(x, f)          # > 20 dB down
    assert _band_power(y, 440.0) == pytest.approx(_band_power(x, 440.0), rel=0.05)


def test_noise_spectrum_comes_from_the_quiet_frames():
    rng = np.random.default_rng(3)
    power = rng.exponential(1.0, size=(257, 200))            # steady noise of unit power per bin
    power[:, 60:140] += 50.0                                  # "speech" in the middle
    estimate = noise_spectrum(power, quiet_share=0.2)
    assert 0.7 < float(np.median(estimate)) < 1.3


def test_suppression_lowers_noise_and_keeps_the_tone():
    t = _time()
    tone = 3000 * np.sin(2 * np.pi * 440 * t) * ((t > 1.0) & (t < 2.0))
    noise = 800 * np.random.default_rng(4).standard_normal(t.size)
    y = suppress_noise(tone + noise, RATE)
    quiet, voiced = t < 0.9, (t > 1.1) & (t < 1.9)
    rms = lambda v: float(np.sqrt(np.mean(v ** 2)))                    # noqa: E731
    assert rms(y[quiet]) < 0.5 * rms(noise[quiet])                    # > 6 dB less noise
    assert np.corrcoef(y[voiced], tone[voiced])[0, 1] > 0.98
    assert rms(y[voiced]) == pytest.approx(rms(tone[voiced]), rel=0.1)


def test_enhance_keeps_length_and_type():
    t = _time(1.0)
    x = (1000 * np.random.default_rng(5).standard_normal(t.size)).astype(np.int16)
    y = enhance(x, RATE, FrontEnd(hum_notch=True))
    assert y.dtype == np.int16 and y.size == x.size
    short = x[:100]
    assert np.array_equal(enhance(short, RATE), short)               # too short to estimate anything


def test_speech_config_front_end_fields():
    from fluorosam_ros.language.evaluate import speech_config
    from fluorosam_ros.language.speech import SpeechConfig, SpeechRecognizer

    options = SimpleNamespace(set=["denoise=true", "denoise_floor_db=-9", "hum_notch=no"], reject_gap=None,
                              motion_gap=None, search=None)
    config = speech_config(options)
    assert (config.denoise, config.denoise_floor_db, config.hum_notch) == (True, -9.0, False)
    samples = np.zeros(RATE, np.int16)
    # with every stage off the audio is passed through untouched (same object)
    off = SimpleNamespace(config=SpeechConfig(denoise=False, hum_notch=False))
    assert SpeechRecognizer._front_end(off, samples) is samples
    on = SimpleNamespace(config=config)
    assert SpeechRecognizer._front_end(on, samples).shape == samples.shape


def test_the_gain_is_skipped_under_babble_like_noise():
    """Noise whose level rises and falls like talk is left alone (the gain hurt recognition there)."""
    t = _time()
    rng = np.random.default_rng(6)
    steady = 800 * rng.standard_normal(t.size)
    # a level that rises and falls by several dB at syllable rates, as talk does
    syllables_db = 6 * np.sin(2 * np.pi * 3.3 * t) + 4 * np.sin(2 * np.pi * 5.1 * t + 1)
    talk = steady * 10 ** (syllables_db / 20)
    assert not np.allclose(suppress_noise(steady, RATE), steady)
    assert np.allclose(suppress_noise(talk, RATE), talk)
    assert not np.allclose(suppress_noise(talk, RATE, FrontEnd(max_unsteadiness_db=np.inf)), talk)
