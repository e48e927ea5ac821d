"""Speech: grammar generation, pronunciations, and the recogniser on espeak-ng audio."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fluorosam_ros.language.audio import (RoomNoise, Voice, espeak_available, mix_at_snr, pad, pink_noise,
                                          synthesize)
from fluorosam_ros.language.numbers import normalize_command
from fluorosam_ros.language.pronounce import ipa_to_arpabet, pronounce, spell
from fluorosam_ros.language.speech import (PRONUNCIATIONS, Recognition, SpeechConfig, build_grammar, corpus_rules,
                                           grammar_lexicon, grammar_words, parse_recognition, read_dictionary,
                                           structure_phrases, teen_ty_doubt)
from fluorosam_ros.language.vocabulary import default_vocabulary
from speech_checks import assert_off_topic_gives_no_action

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


def test_every_language_model_word_has_a_pronunciation_without_running_espeak():
    from fluorosam_ros.language.lm import rule_words

    words = sorted(rule_words(corpus_rules()))
    lexicon, missing, made = grammar_lexicon(words, use_espeak=False)
    assert not missing and not made, (missing, made)
    assert len(lexicon) > 600
    assert "stopp" not in words and "dont" not in words          # typed spellings are not said


def test_action_gate_on_recognitions():
    from fluorosam_ros.language.parser import CommandParser, ParserConfig

    parser = CommandParser(config=ParserConfig(use_embeddings=False))
    config = SpeechConfig(motion_gap=-4.5, motion_agreement=0.7, motion_confidence=0.9, clear_gap=-3.75)

    def heard(text, gap=-4.0, alternatives=None):
        return Recognition(text, True, text, gap, details={"alternatives": alternatives or [text]})

    intent = parse_recognition(heard("move left ten millimeters"), parser, config.motion_gap, config)
    assert (intent.kind, intent.direction, intent.amount) == ("move", "left", 10.0)
    # a poor acoustic fit: asked to repeat, the reading kept as the candidate
    intent = parse_recognition(heard("move left ten millimeters", gap=-5.0), parser, config.motion_gap, config)
    assert intent.kind == "not_understood" and "repeat" in intent.error and "move" in intent.candidates[0]
    # the N-best disagree on the meaning: no action
    alternatives = ["move left ten millimeters", "move left two millimeters", "move right ten millimeters",
                    "move left ten millimeters please"]
    intent = parse_recognition(heard("move left ten millimeters", alternatives=alternatives), parser,
                               config.motion_gap, config)
    assert intent.kind == "not_understood" and "alternatives agree" in intent.error
    # ... unless the acoustic fit is clear enough on its own
    intent = parse_recognition(heard("move left ten millimeters", gap=-3.0, alternatives=alternatives), parser,
                               config.motion_gap, config)
    assert intent.kind == "move"
    # they differ in fillers only: the action stands
    alternatives = ["move left ten millimeters", "move left ten millimeters please", "okay move left ten millimeters"]
    intent = parse_recognition(heard("move left ten millimeters", alternatives=alternatives), parser,
                               config.motion_gap, config)
    assert intent.kind == "move" and intent.details["asr_agreement"] == 1.0
    # an unexplained word costs confidence: below motion_confidence for speech
    assert parse_recognition(heard("move left ten millimeters banana"), parser, config.motion_gap,
                             config).kind == "not_understood"
    # stop and where are never gated by the fit: stopping on a misheard word is safe
    assert parse_recognition(heard("stop", gap=-5.9), parser, config.motion_gap, config).kind == "stop"
    assert parse_recognition(heard("where is the liver", gap=-5.9), parser, config.motion_gap, config).kind == "where"
    refused = Recognition("", False, "take a shot", -7.0, reason="does not sound like a command")
    assert parse_recognition(refused, parser, config.motion_gap, config).kind == "not_understood"


def test_an_amount_whose_teen_or_ty_twin_the_decoder_also_heard_is_asked_again():
    from fluorosam_ros.language.parser import CommandParser, ParserConfig

    assert teen_ty_doubt("move up fifty millimeters", ["move up fifty mm", "move up fifteen millimeters"]) == \
        "fifty or fifteen? say the number again"
    assert teen_ty_doubt("tilt fourteen degrees cranial", ["tilt forty degrees cranial"]).startswith("fourteen or forty")
    assert teen_ty_doubt("move up fifty millimeters", ["move up fifty mm", "move up fifty"]) == ""
    assert teen_ty_doubt("rotate forty five degrees", ["rotate forty five degree"]) == ""
    assert teen_ty_doubt("move up twenty millimeters", ["move up twelve millimeters"]) == ""   # not a teen/ty pair

    parser = CommandParser(config=ParserConfig(use_embeddings=False))
    config = SpeechConfig(motion_gap=-4.5, motion_agreement=0.0, motion_confidence=0.0)
    heard = "move up fifty millimeters"
    doubtful = Recognition(heard, True, heard, -1.0, details={"alternatives": [heard, "move up fifteen millimeters"]})
    intent = parse_recognition(doubtful, parser, config.motion_gap, config)
    assert intent.kind == "not_understood" and "fifty or fifteen" in intent.error and "move" in intent.candidates[0]
    sure = Recognition(heard, True, heard, -1.0, details={"alternatives": [heard, "move up fifty mm"]})
    assert parse_recognition(sure, parser, config.motion_gap, config).amount == 50.0
    # a question names no amount to act on: never held back by it
    where = Recognition("where is the liver", True, "", -1.0, details={"alternatives": ["where is the liver"]})
    assert parse_recognition(where, parser, config.motion_gap, config).kind == "where"


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
@pytest.mark.xfail(strict=True, reason="known gap (issue 5): no acoustic score separates off-topic speech from "
                   "commands on espeak-ng audio (the fit per frame overlaps: commands p50 -4.3, off-topic p50 -4.7 "
                   "nat/frame at 10 dB), so off-topic speech is still decoded into words; it is refused at the intent "
                   "level instead (test below)")
def test_recogniser_rejects_off_topic_speech(recognizer):
    rejected = 0
    for text in ("what a nice day outside", "I think we should order lunch"):
        result = recognizer.recognize(pad(synthesize(text, Voice("en-us", 150))))
        rejected += not result.accepted
    assert rejected == 2


@needs_espeak
def test_off_topic_speech_gives_no_action(recognizer):
    assert_off_topic_gives_no_action(recognizer)


def test_noise_floor_tops_up_digital_silence_only(recognizer):
    rng = np.random.default_rng(0)
    tone = (3000 * np.sin(np.linspace(0, 2000 * np.pi, 16000))).astype(np.int16)
    silent = np.concatenate([np.zeros(8000, np.int16), tone, np.zeros(8000, np.int16)])
    topped = recognizer._with_noise_floor(silent).astype(float)
    assert abs(np.std(topped[:8000]) - recognizer.config.noise_floor) < 10       # ~100 LSB in the gaps
    noisy = np.clip(silent + rng.normal(0, 800, silent.size), -32768, 32767).astype(np.int16)
    residual = recognizer._with_noise_floor(noisy).astype(float) - noisy
    assert np.std(residual) < 3                                                  # the 2 LSB dither only
    assert np.array_equal(recognizer._with_noise_floor(noisy), recognizer._with_noise_floor(noisy))   # seeded


def test_recogniser_refuses_bad_audio(recognizer):
    assert not recognizer.recognize(np.zeros(100, np.int16)).accepted
    too_long = np.zeros(int(SpeechConfig().max_utterance_s * 16000) + 16000, np.int16)
    result = recognizer.recognize(too_long)
    assert not result.accepted and "longer" in result.reason


@needs_espeak
def test_recogniser_decodes_clean_synthetic_speech(recognizer):
    for text in ("show me the left femur", "stop", "take a shot"):
        result = recognizer.recognize(pad(synthesize(text, Voice("en-us", 150))))
        assert result.accepted and normalize_command(result.text) == normalize_command(text), result.raw_text


@needs_espeak
def test_recogniser_decodes_most_clean_synthetic_commands(recognizer, record_figure):
    """Clean synthetic speech (exact digital silence between words) decodes once the recogniser
    tops its noise floor up to a microphone's (SpeechConfig.noise_floor); with a 2 LSB dither
    alone 5/36 of the set below were exact ('show the left the', 'do you shot')."""
    texts = ["take a shot", "show me the liver", "show me the left femur", "stop", "zoom in", "move left ten millimeters",
             "go back", "collimate to the heart", "show me the left lung", "rotate twenty degrees to the left", "undo",
             "where is the spleen"]
    exact = total = 0
    for text in texts:
        for audio in (synthesize(text), pad(synthesize(text)), pad(synthesize(text, Voice("en-gb", 170)))):
            result = recognizer.recognize(audio)
            exact += normalize_command(result.raw_text) == normalize_command(text)
            total += 1
    record_figure(f"ASR on clean espeak-ng speech: {exact}/{total} commands exact (en-us@150 bare and padded, "
                  "en-gb@170 padded)")
    assert exact >= 0.6 * total