"""Speech: grammar generation, pronunciations, and the recogniser on espeak-ng audio."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fluorosam_ros.language.audio import (RoomNoise, Voice, espeak_available, mix_at_snr, pad, pink_noise,
                                          synthesize)
from fluorosam_ros.language.numbers import normalize_command
from fluorosam_ros.language.pronounce import ipa_to_arpabet, pronounce, spell
from fluorosam_ros.language.speech import (PRONUNCIATIONS, SpeechConfig, build_grammar, grammar_lexicon,
                                           grammar_words, read_dictionary, structure_phrases)
from fluorosam_ros.language.vocabulary import default_vocabulary

pocketsphinx = pytest.importorskip("pocketsphinx")
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (scripts/setup.sh)")


def test_every_grammar_word_has_a_pronunciation_without_running_espeak():
    """cmudict + the reviewed pronunciations.dict cover the whole grammar (no run-time guessing)."""
    grammar = build_grammar()
    lexicon, missing, made = grammar_lexicon(grammar_words(grammar), use_espeak=False)
    assert not missing and not made, (missing, made)
    assert len(lexicon) > 300
    ours = read_dictionary(PRONUNCIATIONS)
    assert ours["l3"] == ["EH L TH R IY"] and ours["ivc"] == ["AY V IY S IY"]


def test_grammar_is_built_from_the_vocabulary():
    phrases = structure_phrases(default_vocabulary())
    for said in ("left femur", "collarbone", "l3", "third lumbar vertebra", "lumbar three", "left fifth rib", "windpipe"):
        assert said in phrases, said
    assert not any(re.search(r"\d(st|nd|rd|th)\b", p) for p in phrases)   # "9th" is written, not said
    grammar = build_grammar()
    assert grammar.count("<structure> =") == 1 and "public <command>" in grammar


def test_pronunciation_rules():
    lookup = {"three": "TH R IY", "twelve": "T W EH L V"}.get
    assert pronounce("l3", lookup) == "EH L TH R IY"
    assert pronounce("th12", lookup) == "T IY T W EH L V"
    assert pronounce("ivc", lookup, abbreviation=True) == spell("ivc") == "AY V IY S IY"
    assert ipa_to_arpabet("kˈɑːlᵻmˌe\u200dɪt") == "K AA L IH M EY T"


def test_noise_and_snr_mixing():
    rng = np.random.default_rng(0)
    noise = pink_noise(16000, rng)
    assert abs(np.sqrt(np.mean(noise ** 2)) - 1) < 1e-6
    speech = (3000 * np.sin(np.linspace(0, 400 * np.pi, 16000))).astype(np.int16)
    mixed = mix_at_snr(speech, noise, 10.0).astype(float)
    residual = mixed - speech
    snr = 10 * np.log10(np.mean(speech.astype(float) ** 2) / np.mean(residual ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)


@pytest.fixture(scope="module")
def recognizer():
    from fluorosam_ros.language.speech import SpeechRecognizer

    return SpeechRecognizer()


@needs_espeak
@pytest.mark.slow
def test_recogniser_decodes_commands_in_noise(recognizer, record_figure):
    noise = RoomNoise(seed=3, seconds=6, use_babble=False)
    cases = ["show me the left femur", "stop", "take a shot", "rotate twenty degrees to the left",
             "move caudally ten millimeters"]
    exact = 0
    for text in cases:
        audio = pad(synthesize(text, Voice("en-us", 150)))
        audio = mix_at_snr(audio, noise.segment(len(audio)), 20.0)
        result = recognizer.recognize(audio)
        exact += result.accepted and normalize_command(result.text) == normalize_command(text)
    record_figure(f"ASR smoke: {exact}/5 commands exact at 20 dB SNR, recogniser load {recognizer.load_s:.1f} s")
    assert exact >= 4, f"{exact}/5 decoded exactly"


@needs_espeak
@pytest.mark.xfail(strict=True, reason="known gap (issue 5): the grammar-vs-phone-loop score gap is ~0 for "
                   "every utterance (pocketsphinx normalises path scores per frame), so off-topic speech is "
                   "not rejected yet")
def test_recogniser_rejects_off_topic_speech(recognizer):
    rejected = 0
    for text in ("what a nice day outside", "I think we should order lunch"):
        result = recognizer.recognize(pad(synthesize(text, Voice("en-us", 150))))
        rejected += not result.accepted
    assert rejected == 2


def test_recogniser_refuses_bad_audio(recognizer):
    assert not recognizer.recognize(np.zeros(100, np.int16)).accepted
    too_long = np.zeros(int(SpeechConfig().max_utterance_s * 16000) + 16000, np.int16)
    result = recognizer.recognize(too_long)
    assert not result.accepted and "longer" in result.reason


@needs_espeak
@pytest.mark.xfail(strict=True, reason="known gap (issue 5): with the full command grammar, CLEAN synthetic "
                   "speech often ends in a partial path ('show me the left femur' -> 'show the glutes the lao', "
                   "'stop' -> 'stop the'); with a room-noise floor it decodes (test above)")
def test_recogniser_decodes_clean_synthetic_speech(recognizer):
    for text in ("show me the left femur", "stop", "take a shot"):
        result = recognizer.recognize(pad(synthesize(text, Voice("en-us", 150))))
        assert result.accepted and normalize_command(result.text) == normalize_command(text), result.raw_text
