"""command_node's check of each AudioChunk: a wrong sample rate or more than one channel is
refused with the reason (named even when speech is off)."""

from __future__ import annotations

from hypothesis import given

from fluorosam_ros.nodes.command_node import audio_refusal
from fluorosam_ros.reliability import REFUSED
from fluorosam_ros.reliability import fuzz


@given(fuzz.bad_audio_chunks())
def test_wrong_rate_or_channels_are_refused_with_the_reason(ledger, case):
    assert fuzz.check_audio_chunk(ledger, case, speech_enabled=True) == REFUSED, ledger.problems()


@given(fuzz.bad_audio_chunks())
def test_the_reason_is_the_chunk_even_when_speech_is_off(ledger, case):
    assert fuzz.check_audio_chunk(ledger, case, speech_enabled=False) == REFUSED, ledger.problems()


def test_a_good_chunk_is_taken():
    assert audio_refusal(16000, 1, 16000) == ""
    assert audio_refusal(16000, 0, 16000) == ""
    assert "speech is off" in audio_refusal(16000, 1, 16000, speech_enabled=False)
    assert "8000 Hz" in audio_refusal(8000, 1, 16000, speech_enabled=False)
