"""Checks every speech engine must pass (pocketsphinx's and our CTC engine)."""

from __future__ import annotations

OFF_TOPIC = ("what a nice day outside", "I think we should order lunch", "hand me the retractor",
             "the traffic was terrible this morning")


def assert_off_topic_gives_no_action(recognizer) -> None:
    """What matters for safety: off-topic talk never moves the C-arm or fires, clean or at 10 dB
    (the action gate of parse_recognition: acoustic fit, parser confidence, N-best agreement)."""
    from fluorosam_ros.language.audio import RoomNoise, Voice, mix_at_snr, pad, synthesize
    from fluorosam_ros.language.parser import CommandParser, ParserConfig

    parser = CommandParser(config=ParserConfig(use_embeddings=False))
    noise = RoomNoise(seed=3, seconds=8, use_babble=False)
    for text in OFF_TOPIC:
        for snr in (None, 10.0):
            audio = pad(synthesize(text, Voice("en-us", 150)))
            if snr is not None:
                audio = mix_at_snr(audio, noise.segment(len(audio)), snr)
            result = recognizer.recognize(audio)
            intent = recognizer.interpret(result, parser)
            assert not intent.acts, (text, snr, result.raw_text, intent.describe())
