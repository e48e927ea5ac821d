"""`fluorosam say "..."`: speak a command into the running system without a microphone.

Synthesises the text with espeak-ng (or reads a WAV), resamples to 16 kHz PCM16 mono, publishes
it on /command/audio in 100 ms AudioChunks (the last one flagged end_of_utterance), and prints
the Intent that command_node answers with.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from std_msgs.msg import Header, String

from fluorosam_ros.msg import AudioChunk
from fluorosam_ros.msg import Intent as IntentMsg

from .common import RELIABLE_QOS, configure_ros_environment

CHUNK_S = 0.1


def audio_chunks(samples: np.ndarray, rate: int, header: Header, chunk_s: float = CHUNK_S) -> list[AudioChunk]:
    """Split PCM16 samples into AudioChunk messages; the last one ends the utterance."""
    step = max(1, int(rate * chunk_s))
    parts = [samples[i:i + step] for i in range(0, len(samples), step)] or [samples]
    return [AudioChunk(header=header, sample_rate_hz=rate, channels=1, samples=part.astype(np.int16).tolist(),
                       end_of_utterance=(i == len(parts) - 1)) for i, part in enumerate(parts)]


class Speaker(Node):
    def __init__(self) -> None:
        super().__init__("fluorosam_say")
        self.audio_pub = self.create_publisher(AudioChunk, "/command/audio", RELIABLE_QOS)
        self.text_pub = self.create_publisher(String, "/command/text", RELIABLE_QOS)
        self.intents: list[IntentMsg] = []
        self.create_subscription(IntentMsg, "/command/intent", self.intents.append, RELIABLE_QOS)

    def wait_for_listener(self, timeout_s: float, publisher=None) -> bool:
        publisher = publisher or self.audio_pub
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if publisher.get_subscription_count() > 0:
                return True
            rclpy.spin_once(self, timeout_sec=0.1)
        return False

    def say(self, samples: np.ndarray, rate: int, realtime: bool = False) -> None:
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id="microphone")
        for chunk in audio_chunks(samples, rate, header):
            self.audio_pub.publish(chunk)
            if realtime:
                time.sleep(CHUNK_S)

    def wait_for_intent(self, since: int, timeout_s: float, source: str = "speech") -> IntentMsg | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.1)
            for intent in self.intents[since:]:
                if intent.source == source:
                    return intent
        return None


def main(argv: list[str] | None = None) -> int:
    from fluorosam_ros.language.audio import SynthesisError, Voice, read_wav, resample, synthesize

    parser = argparse.ArgumentParser(prog="fluorosam say",
                                     description="Speak a command into the running system (espeak-ng -> /command/audio).")
    parser.add_argument("text", nargs="?", default="", help="what to say")
    parser.add_argument("--wav", type=Path, help="send this WAV file instead of synthesising")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice (en-us, en-gb, ...)")
    parser.add_argument("--speed", type=int, default=150, help="words per minute")
    parser.add_argument("--realtime", action="store_true", help="send chunks at the speaking rate")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for command_node and its answer")
    parser.add_argument("--type", action="store_true", help="type the text on /command/text instead of speaking it")
    args = parser.parse_args(argv)
    if not args.text and not args.wav:
        parser.error("give the text to say or --wav FILE")
    if args.type:
        return _deliver(lambda node: node.text_pub.publish(String(data=args.text)), "text", args.wait)
    try:
        if args.wav:
            samples, rate = read_wav(args.wav)
            samples = resample(samples, rate, 16000)
        else:
            samples = synthesize(args.text, Voice(args.voice, args.speed))
    except (SynthesisError, OSError, ValueError) as error:
        print(f"fluorosam say: {error}")
        return 2

    def speak(node: Speaker) -> None:
        node.say(samples, 16000, realtime=args.realtime)
        print(f"said {len(samples) / 16000:.2f} s of audio on /command/audio")

    return _deliver(speak, "speech", args.wait)


def _print_intent(intent: IntentMsg) -> None:
    slots = {k: getattr(intent, k) for k in ("structure", "view", "direction", "unit") if getattr(intent, k)}
    print(f"intent: {intent.kind} {slots} amount={intent.amount} confidence={intent.confidence:.2f}"
          f" heard={intent.source_text!r} {intent.error}")


def _deliver(send, source: str, wait_s: float) -> int:
    """Wait for command_node, `send` the command (speech or text), print the intent it made."""
    configure_ros_environment()
    rclpy.init()
    node = Speaker()
    publisher, topic = (node.audio_pub, "/command/audio") if source == "speech" else (node.text_pub, "/command/text")
    try:
        if not node.wait_for_listener(wait_s, publisher):
            print(f"fluorosam say: nobody subscribes to {topic} (is command_node running?)")
            return 1
        time.sleep(0.3)  # let the reliable connection settle before the first message
        since = len(node.intents)
        send(node)
        intent = node.wait_for_intent(since, wait_s, source=source)
        if intent is None:
            print("no intent received")
            return 1
        _print_intent(intent)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
