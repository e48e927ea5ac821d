"""Synthetic training speech: voices never the evaluation's, sentences spoken as transcribed,
and the seeded room."""

from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.language.acoustic.corpus import (HELD_OUT_ACCENTS, AugmentConfig, RoomAugmenter, SpokenCorpus,
                                                    SynthVoice, coloured_noise, draw_sentences, draw_voice,
                                                    espeak_variants, speak, synthesize_corpus)
from fluorosam_ros.language.audio import espeak_available, spelled_for_speech

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (scripts/setup.sh)")


def test_training_voices_are_never_the_evaluations():
    rng = np.random.default_rng(0)
    variants = ["Andy", "f1"]
    for _ in range(500):
        voice = draw_voice(rng, variants, flite_share=0.3)
        if voice.engine == "espeak":
            assert voice.name.split("+")[0] not in HELD_OUT_ACCENTS, voice
            assert 110 <= voice.speed <= 220
        else:
            assert voice.engine == "flite"


def test_sentences_mix_commands_and_talk_and_repeat_with_the_seed():
    sentences = draw_sentences(400, seed=3, off_topic_share=0.2)
    assert sentences == draw_sentences(400, seed=3, off_topic_share=0.2)
    assert sentences != draw_sentences(400, seed=4, off_topic_share=0.2)
    commands = sum(s.split()[0] in {"stop", "show", "move", "rotate", "zoom", "collimate", "take", "tilt", "where"}
                   for s in sentences)
    assert 0.1 * len(sentences) < commands < len(sentences)


def test_coloured_noise_has_the_asked_slope():
    rng = np.random.default_rng(0)
    for exponent in (0.0, 2.0):
        x = coloured_noise(2 ** 16, exponent, rng)
        power = np.abs(np.fft.rfft(x)) ** 2
        low, high = power[50:500].mean(), power[5000:20000].mean()
        assert np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0, rel=1e-3)
        assert (low / high > 100) == (exponent == 2.0)


@needs_espeak
def test_corpus_round_trips_and_the_room_is_seeded(tmp_path):
    corpus = synthesize_corpus(6, seed=1, workers=1, progress=False)
    assert len(corpus) >= 5 and all(t and set(t) <= set(" 'abcdefghijklmnopqrstuvwxyz") for t in corpus.transcripts)
    loaded = SpokenCorpus.load(corpus.save(tmp_path / "c.npz"))
    assert loaded.transcripts == corpus.transcripts and np.array_equal(loaded.audio(2), corpus.audio(2))
    assert all(v.split(":")[1].split("+")[0].split("@")[0] not in HELD_OUT_ACCENTS for v in corpus.voices)
    clean = corpus.audio(0)
    first, second = RoomAugmenter(5, bank_seconds=4), RoomAugmenter(5, bank_seconds=4)
    a, b = first(clean), second(clean)
    assert a.dtype == np.int16 and np.array_equal(a, b)
    assert 0.8 * len(clean) < len(a) < 1.2 * len(clean) + 0.8 * 16000
    noisy = RoomAugmenter(6, AugmentConfig(noise_p=1.0, speed_p=0, reverb_p=0, colour_p=0, snr_db=(0, 0),
                                           pad_s=(0.5, 0.5)), bank_seconds=4)(clean)
    assert np.std(noisy[:4000].astype(float)) > 10 * max(np.std(clean[:100].astype(float)), 1.0)


@needs_espeak
def test_every_listed_speaker_variant_changes_the_voice():
    """espeak-ng speaks the plain voice for a variant name it does not find: sessions 1-16
    trained on the listing's display names, and 60 % of their variant draws were the plain
    accent."""
    variants = espeak_variants()
    assert len(variants) > 60
    plain = speak("show me the heart", SynthVoice("espeak", "en-gb-x-rp", 150))
    for variant in variants[::7]:
        spoken = speak("show me the heart", SynthVoice("espeak", f"en-gb-x-rp+{variant}", 150))
        assert spoken.shape != plain.shape or not np.array_equal(spoken, plain), variant
    # the old naming, kept to reproduce runs 1-9, is the one that fell back to the plain voice
    fallen_back = [name for name in espeak_variants("listed")[::7]
                   if np.array_equal(speak("show me the heart", SynthVoice("espeak", f"en-gb-x-rp+{name}", 150)),
                                     plain)]
    assert len(fallen_back) >= 5, fallen_back
    with pytest.raises(ValueError, match="variant naming"):
        espeak_variants("display")


def test_abbreviations_people_spell_are_written_to_be_spelled():
    """espeak-ng reads "ap" as a word rhyming with "cap" and "AP" among other words as "ay pee";
    runs 1-10 heard only the first, the evaluation (and a surgeon) says the second."""
    assert spelled_for_speech("give me an ap then rotate rao and a pa gi tract map apex") == \
        "give me an AP then rotate RAO and a PA GI tract map apex"
    rng = np.random.default_rng(0)
    drawn = [spelled_for_speech("ap", 0.85, rng) for _ in range(400)]
    assert 0.78 < drawn.count("AP") / len(drawn) < 0.92
    assert spelled_for_speech("ap view", 0.0) == "ap view"


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_spelled_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        spelled_for_speech("ap view", share, np.random.default_rng(0))


def test_a_drawn_spelled_share_needs_a_generator():
    with pytest.raises(ValueError, match="rng"):
        spelled_for_speech("ap view", 0.5)


@needs_espeak
def test_espeak_spells_the_capitalised_abbreviation():
    import subprocess

    def phonemes(text: str) -> str:
        return subprocess.run(["espeak-ng", "-v", "en-us", "-q", "-x", text], capture_output=True, text=True,
                              timeout=10).stdout

    assert "eIp'i:" in phonemes(spelled_for_speech("give me an ap view"))       # "ay pee"
    assert "'ap" in phonemes("give me an ap view")                              # "ap", as in "cap"
