"""The CTC engine with the bundled weights, on voices it never trained on (espeak-ng en-us and
en-gb, the evaluation's), clean and in room noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fluorosam_ros.language.acoustic.recognizer import (CtcSpeechRecognizer, _warn_if_gate_decodes_otherwise,
                                                         _warn_if_gate_predates_word_model, word_model_sha256)
from fluorosam_ros.language.acoustic.weights import AcousticCheckpointError, bundled_speech_weights
from fluorosam_ros.language.audio import RoomNoise, Voice, espeak_available, mix_at_snr, pad, synthesize
from fluorosam_ros.language.numbers import normalize_command
from fluorosam_ros.language.parser import CommandParser, ParserConfig
from fluorosam_ros.language.speech import SpeechConfig, make_recognizer
from speech_checks import assert_off_topic_gives_no_action

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (scripts/setup.sh)")
COMMANDS = ("show me the left femur", "stop", "take a shot", "rotate twenty degrees to the left",
            "move caudally ten millimeters", "collimate to the heart", "zoom in", "where is the spleen",
            "go back", "tilt ten degrees cranial")


@pytest.fixture(scope="module")
def recognizer():
    return CtcSpeechRecognizer()


@pytest.fixture(scope="module")
def parser():
    return CommandParser(config=ParserConfig(use_embeddings=False))


def test_default_engine_is_ctc_with_its_own_gate(recognizer):
    assert bundled_speech_weights().is_file()
    config = recognizer.config
    assert (config.reject_gap, config.motion_gap, config.clear_gap) == \
        (config.ctc_reject_gap, config.ctc_motion_gap, config.ctc_clear_gap)
    assert SpeechConfig().engine == "ctc"
    with pytest.raises(ValueError, match="unknown speech engine"):
        make_recognizer(SpeechConfig(engine="whisper"))


def test_the_bundled_gate_was_fitted_with_this_word_model(recognizer):
    """The word model is rebuilt from the parser's phrase lists and the vocabulary: after editing
    them, refit the gate (`fluorosam evaluate-language --fit-gate weights/command_gate.json
    --tuning-commands 200`), or its threshold is calibrated on recognitions that no longer happen."""
    assert recognizer.action_gate is not None
    assert recognizer.action_gate.word_model_sha256 == recognizer.word_model_sha256


def test_a_gate_from_another_word_model_is_used_with_a_warning(recognizer, caplog):
    fingerprint = word_model_sha256([["stop"]], 3)
    assert fingerprint != word_model_sha256([["stop"]], 2)
    assert word_model_sha256([["stop", "now"]], 3) != word_model_sha256([["stop"], ["now"]], 3)
    gate = replace(recognizer.action_gate, word_model_sha256=fingerprint)
    with caplog.at_level("WARNING"):
        _warn_if_gate_predates_word_model(gate, word_model_sha256([["stop", "now"]], 3))
    assert "refit" in caplog.text and "another command word model" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_if_gate_predates_word_model(gate, fingerprint)
        _warn_if_gate_predates_word_model(None, "anything")       # no gate: the hand thresholds
    assert not caplog.text


def test_the_bundled_gate_was_fitted_with_these_beam_search_settings(recognizer, caplog):
    """The fusion weight and word bonus decide which words win and how the N-best agrees: a gate
    fitted with other settings is used, with a warning to refit it."""
    gate = recognizer.action_gate
    assert gate.decoder_settings == recognizer.decoder_settings
    assert gate.decoder_settings["lm_weight"] == recognizer.config.ctc_lm_weight
    with caplog.at_level("WARNING"):
        _warn_if_gate_decodes_otherwise(gate, {**recognizer.decoder_settings, "lm_weight": 0.8})
    assert "lm_weight" in caplog.text and "refit" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_if_gate_decodes_otherwise(gate, dict(recognizer.decoder_settings))
        _warn_if_gate_decodes_otherwise(replace(gate, decoder_settings={}), {"lm_weight": 0.8})  # older files
        _warn_if_gate_decodes_otherwise(None, {"lm_weight": 0.8})
    assert not caplog.text


@needs_espeak
@pytest.mark.parametrize("snr_db", [None, 10.0])
def test_commands_in_unseen_voices(recognizer, parser, record_figure, snr_db):
    noise = RoomNoise(seed=11, seconds=8)
    exact = acted_wrongly = total = 0
    for voice in (Voice("en-us", 150), Voice("en-gb", 170)):
        for text in COMMANDS:
            audio = pad(synthesize(text, voice))
            if snr_db is not None:
                audio = mix_at_snr(audio, noise.segment(len(audio)), snr_db)
            result = recognizer.recognize(audio)
            intent = recognizer.interpret(result, parser)
            expected = parser.parse(text)
            exact += normalize_command(result.raw_text) == normalize_command(text)
            acted_wrongly += intent.acts and intent.describe() != expected.describe()
            total += 1
    record_figure(f"CTC speech engine, voices it never trained on, {'clean' if snr_db is None else f'{snr_db:g} dB'}: "
                  f"{exact}/{total} exact words, {acted_wrongly} wrong actions")
    assert exact >= 0.8 * total and acted_wrongly == 0


@needs_espeak
def test_off_topic_speech_gives_no_action(recognizer):
    assert_off_topic_gives_no_action(recognizer)


@needs_espeak
def test_streaming_equals_one_call(recognizer):
    audio = pad(synthesize("zoom out", Voice("en-gb", 130)))
    whole = recognizer.recognize(audio)
    recognizer.start()
    for chunk in np.array_split(audio, 7):
        recognizer.feed(chunk)
    streamed = recognizer.finish()
    assert streamed.raw_text == whole.raw_text and streamed.gap == pytest.approx(whole.gap)


def test_bad_audio_is_refused(recognizer):
    assert "shorter" in recognizer.recognize(np.zeros(100, np.int16)).reason
    too_long = np.zeros(int(recognizer.config.max_utterance_s * 16000) + 16000, np.int16)
    assert "longer" in recognizer.recognize(too_long).reason
    for quiet in (np.zeros(16000, np.int16), np.random.default_rng(0).normal(0, 300, 16000).astype(np.int16)):
        heard = recognizer.recognize(quiet)
        assert not heard.accepted and "no speech" in heard.reason


def test_corrupt_weights_are_refused_clearly(tmp_path):
    broken = tmp_path / "command_asr.pt"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(AcousticCheckpointError, match="cannot be read"):
        CtcSpeechRecognizer(config=SpeechConfig(ctc_weights=str(broken)))


def test_another_sample_rate_is_refused_at_start():
    with pytest.raises(ValueError, match="16000 Hz"):
        CtcSpeechRecognizer(config=SpeechConfig(sample_rate_hz=8000))


def test_the_bundled_gate_belongs_to_the_bundled_weights(recognizer):
    """weights/command_gate.json was fitted to weights/command_asr.pt (their SHA-256 agree)."""
    from fluorosam_ros.language.action_gate import bundled_action_gate, file_sha256

    assert recognizer.action_gate is not None
    assert recognizer.action_gate.acoustic_sha256 == file_sha256(bundled_speech_weights())
    assert 0.0 < recognizer.action_gate.threshold < 1.0
    assert bundled_action_gate().name == "command_gate.json"


def test_a_gate_for_other_weights_falls_back_to_the_thresholds(tmp_path, caplog):
    from fluorosam_ros.language.action_gate import ActionGate, bundled_action_gate

    record = ActionGate.load(bundled_action_gate())
    record.acoustic_sha256 = "0" * 64
    foreign = record.save(tmp_path / "gate.json")
    with caplog.at_level("WARNING"):
        fallback = CtcSpeechRecognizer(config=SpeechConfig(ctc_action_gate=str(foreign)))
    assert fallback.action_gate is None and "another acoustic model" in caplog.text
    assert CtcSpeechRecognizer(config=SpeechConfig(ctc_action_gate="off")).action_gate is None
