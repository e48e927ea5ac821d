"""Read-back confirmation of held-back spoken commands (language/confirmation.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fluorosam_ros.language.confirmation import (CANCEL, CONFIRM, HELD_BACK, ConfirmationConfig, ReadBack, reply_to,
                                                 spoken_reply)
from fluorosam_ros.language.intents import COLLIMATE, MOVE, NOT_UNDERSTOOD, STOP, Intent, not_understood


def held(reading: Intent, text: str = "collimate to the heart") -> Intent:
    refusal = not_understood(text, f"heard {text!r} but not clearly enough to act (x); please repeat",
                             candidates=(reading.describe(),), source="speech")
    refusal.details[HELD_BACK] = reading
    return refusal


HEART = Intent(COLLIMATE, structure="heart", confidence=1.0, source="speech", source_text="collimate to the heart")


def said(text: str) -> Intent:
    """What the parser makes of a bare reply: not understood."""
    return not_understood(text, "no command recognised", source="speech")


@pytest.mark.parametrize("text,reply", [
    ("yes", CONFIRM), ("Yes.", CONFIRM), ("uh, yes please", CONFIRM), ("that's right", CONFIRM),
    ("that s right", CONFIRM), ("CORRECT", CONFIRM), ("go ahead", CONFIRM),
    ("no", CANCEL), ("nope!", CANCEL), ("that's wrong", CANCEL), ("don't do it", CANCEL),
    ("yes I think so", ""), ("right", ""), ("no problem", ""), ("yes, show the heart", ""), ("", ""),
])
def test_only_a_whole_reply_is_a_reply(text: str, reply: str) -> None:
    assert reply_to(text) == reply


def test_yes_within_the_timeout_carries_out_the_offer_as_read_back() -> None:
    read_back = ReadBack(ConfirmationConfig(timeout_s=8.0))
    offered = read_back.handle(held(HEART), "", now_s=100.0)
    assert offered.kind == NOT_UNDERSTOOD and "say 'yes' within 8 s" in offered.error
    assert read_back.pending == HEART
    confirmed = read_back.handle(said("yes"), CONFIRM, now_s=103.0)
    assert confirmed.kind == COLLIMATE and confirmed.structure == "heart"
    assert confirmed.method == "confirmed" and confirmed.details["confirmed_by"] == "yes"
    assert read_back.pending is None
    # the offer was used up: a second "yes" confirms nothing
    again = read_back.handle(said("yes"), CONFIRM, now_s=104.0)
    assert again.kind == NOT_UNDERSTOOD and "nothing to confirm" in again.error


def test_no_drops_the_offer_and_nothing_moves() -> None:
    read_back = ReadBack()
    read_back.handle(held(HEART), "", now_s=0.0)
    cancelled = read_back.handle(said("no"), CANCEL, now_s=1.0)
    assert cancelled.kind == NOT_UNDERSTOOD and cancelled.error.startswith("cancelled")
    assert read_back.handle(said("yes"), CONFIRM, now_s=2.0).kind == NOT_UNDERSTOOD


def test_a_late_yes_confirms_nothing() -> None:
    read_back = ReadBack(ConfirmationConfig(timeout_s=5.0))
    read_back.handle(held(HEART), "", now_s=0.0)
    late = read_back.handle(said("yes"), CONFIRM, now_s=5.5)
    assert late.kind == NOT_UNDERSTOOD and "expired" in late.error


def test_any_other_utterance_ends_the_offer() -> None:
    read_back = ReadBack()
    read_back.handle(held(HEART), "", now_s=0.0)
    other = Intent(MOVE, direction="left", confidence=1.0)
    assert read_back.handle(other, "", now_s=1.0) is other
    assert read_back.handle(said("yes"), CONFIRM, now_s=2.0).kind == NOT_UNDERSTOOD


def test_a_stop_is_carried_out_and_drops_the_offer() -> None:
    read_back = ReadBack()
    read_back.handle(held(HEART), "", now_s=0.0)
    stop = Intent(STOP, confidence=1.0)
    assert read_back.handle(stop, "", now_s=1.0).kind == STOP
    assert read_back.pending is None
    # a held-back stop is impossible (stops never go through the gate), and a refusal that
    # carries a stop is not offered either
    refusal = held(stop)
    read_back.handle(Intent(STOP, confidence=1.0, details=refusal.details), "", now_s=2.0)
    assert read_back.pending is None


def test_a_reply_never_overrides_a_command_the_parser_understood() -> None:
    read_back = ReadBack()
    read_back.handle(held(HEART), "", now_s=0.0)
    understood = Intent(MOVE, direction="up", confidence=1.0)
    assert read_back.handle(understood, CONFIRM, now_s=1.0) is understood


def test_refusals_for_what_was_said_are_not_offered() -> None:
    read_back = ReadBack()
    unknown = not_understood("show the appendix", "'appendix' is not a structure I know", source="speech")
    assert read_back.handle(unknown, "", now_s=0.0) is unknown and read_back.pending is None


def test_timeout_zero_turns_read_back_off_and_negative_is_refused() -> None:
    read_back = ReadBack(ConfirmationConfig(timeout_s=0.0))
    refusal = read_back.handle(held(HEART), "", now_s=0.0)
    assert "say 'yes'" not in refusal.error and read_back.pending is None
    with pytest.raises(ValueError):
        ReadBack(ConfirmationConfig(timeout_s=-1.0))
    with pytest.raises(ValueError):
        ReadBack(ConfirmationConfig(timeout_s=float("nan")))


@dataclass
class FakeRecognition:
    """Stands in for speech.Recognition (text, accepted, N-best details) in isolation."""

    text: str
    accepted: bool = True
    details: dict = field(default_factory=dict)


def test_a_spoken_reply_needs_its_alternatives_to_agree() -> None:
    assert spoken_reply(FakeRecognition("yes")) == CONFIRM
    sure = FakeRecognition("yes", details={"alternatives": ["yes", "yes please", "yeah"],
                                           "alternative_scores": [0.0, -6.0, -7.0]})
    assert spoken_reply(sure) == CONFIRM
    # "yes" with a likely "yes sir" (talk) behind it is not a confirmation
    unsure = FakeRecognition("yes", details={"alternatives": ["yes", "yes sir"], "alternative_scores": [0.0, -1.0]})
    assert spoken_reply(unsure) == ""
    assert spoken_reply(FakeRecognition("yes", accepted=False)) == ""
    assert spoken_reply(FakeRecognition("move left")) == ""
    # a cancel needs no such bar: it only drops the offer, as anything else said does
    doubtful_no = FakeRecognition("no", details={"alternatives": ["no", "now"], "alternative_scores": [0.0, -1.0]})
    assert spoken_reply(doubtful_no) == CANCEL


def test_the_bundled_recogniser_hears_yes_as_a_confirmation_and_commands_as_none():
    """Run 14 was trained with the read-back's answers in its corpus (run 13 heard "yes" as "heart")."""
    from fluorosam_ros.language.audio import Voice, espeak_available, pad, synthesize
    from fluorosam_ros.language.speech import SpeechConfig, make_recognizer

    if not espeak_available():
        pytest.skip("espeak-ng not installed (scripts/setup.sh)")
    recognizer = make_recognizer(SpeechConfig())
    heard = {text: spoken_reply(recognizer.recognize(pad(synthesize(text, Voice("en-us", 150)))))
             for text in ("yes", "correct", "show the liver")}
    assert heard == {"yes": CONFIRM, "correct": CONFIRM, "show the liver": ""}, heard
