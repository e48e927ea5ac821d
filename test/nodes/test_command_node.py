"""command_node as a separate process: text and espeak-ng speech in, Intent out, over DDS."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from ros_harness import launched, read_logs
from std_msgs.msg import Header, String

from fluorosam_ros.language.audio import RoomNoise, Voice, espeak_available, mix_at_snr, pad, synthesize
from fluorosam_ros.msg import AudioChunk
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.nodes.common import RELIABLE_QOS
from fluorosam_ros.nodes.say import audio_chunks

pytestmark = [pytest.mark.ros, pytest.mark.timeout(900)]


class Client:
    def __init__(self) -> None:
        self.node = rclpy.create_node("test_command_client")
        self.text_pub = self.node.create_publisher(String, "/command/text", RELIABLE_QOS)
        self.audio_pub = self.node.create_publisher(AudioChunk, "/command/audio", RELIABLE_QOS)
        self.intents: list[IntentMsg] = []
        self.heard: list[str] = []
        self.node.create_subscription(IntentMsg, "/command/intent", self.intents.append, RELIABLE_QOS)
        self.node.create_subscription(String, "/command/heard", lambda m: self.heard.append(m.data), RELIABLE_QOS)

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)
            if predicate():
                return True
        return False

    def say_text(self, text: str, timeout_s: float = 30.0) -> IntentMsg | None:
        since = len(self.intents)
        self.text_pub.publish(String(data=text))
        if self.spin_until(lambda: len(self.intents) > since, timeout_s):
            return self.intents[since]
        return None

    def say_audio(self, samples: np.ndarray, rate: int = 16000, timeout_s: float = 120.0) -> IntentMsg | None:
        since = len(self.intents)
        for chunk in audio_chunks(samples, rate, Header()):
            self.audio_pub.publish(chunk)
        if self.spin_until(lambda: any(i.source == "speech" for i in self.intents[since:]), timeout_s):
            return next(i for i in self.intents[since:] if i.source == "speech")
        return None


@pytest.fixture(scope="module")
def command(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("command_node_logs")
    with launched("command.launch.yaml", log_dir, speech_enabled="true") as launcher:
        rclpy.init()
        client = Client()
        try:
            # The node answers once its parser and recogniser are loaded (minutes on a busy
            # 2-core machine); "stop" is harmless to repeat until it does.
            ready = False
            deadline = time.monotonic() + 600
            while not ready and time.monotonic() < deadline:
                ready = client.say_text("stop", timeout_s=5.0) is not None
                if any(p.poll() is not None for p in launcher.processes.values()):
                    break
            if not ready:
                pytest.fail("command_node did not answer:\n" + read_logs(log_dir))
            yield client, launcher, log_dir
        finally:
            client.node.destroy_node()
            rclpy.try_shutdown()
        assert all(p.poll() is None for p in launcher.processes.values()), \
            "command_node died during the tests:\n" + read_logs(log_dir)


def test_text_command_gives_the_intent(command):
    client, _, _ = command
    intent = client.say_text("show me the left femur in lateral view")
    assert intent is not None
    assert (intent.kind, intent.structure, intent.view, intent.source) == ("show", "femur_left", "lateral", "text")
    assert intent.confidence >= 0.75
    intent = client.say_text("move left twenty millimeters")
    assert (intent.kind, intent.direction, intent.amount, intent.unit) == ("move", "left", 20.0, "mm")
    assert any("femur_left" in h for h in client.heard)


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (scripts/setup.sh)")
def test_spoken_command_gives_the_intent(command, record_figure):
    client, _, _ = command
    # A microphone signal: speech plus a room-noise floor at 20 dB SNR (clean synthetic speech is
    # covered by `fluorosam say` below and by test/language/test_speech.py).
    speech = pad(synthesize("show me the left femur", Voice("en-us", 150)))
    audio = mix_at_snr(speech, RoomNoise(seed=3, seconds=6, use_babble=False).segment(len(speech)), 20.0)
    started = time.perf_counter()
    intent = client.say_audio(audio)
    elapsed = time.perf_counter() - started
    assert intent is not None, read_logs(command[2])
    # the right reading, acted on or (when the action gate is not sure enough) offered back as
    # the candidate of a "please repeat"; never another action
    acted = (intent.kind, intent.structure) == ("show", "femur_left")
    asked = intent.kind == "not_understood" and "repeat" in intent.error and \
        any("femur_left" in c for c in intent.candidates)
    assert intent.source == "speech" and (acted or asked), intent
    record_figure(f"command_node: spoken 'show me the left femur' -> Intent in {elapsed:.2f} s over DDS "
                  f"({'acted on' if acted else 'heard right, gate asked to repeat'})")


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (scripts/setup.sh)")
def test_a_held_back_spoken_command_is_carried_out_by_yes_and_only_once(command):
    """Read-back (language/confirmation.py): a reading the action gate held back is offered, and a
    'yes' (here typed, as an assistant at the console would) carries it out; with nothing offered
    a 'yes' does nothing."""
    client, _, _ = command
    speech = pad(synthesize("collimate to the heart", Voice("en-gb", 170)))
    audio = mix_at_snr(speech, RoomNoise(seed=5, seconds=6, use_babble=True).segment(len(speech)), 10.0)
    first = client.say_audio(audio)
    assert first is not None, read_logs(command[2])
    offered = first.kind == "not_understood" and "say 'yes'" in first.error
    confirmation = client.say_text("yes")
    if offered:
        offer = next(c for c in first.candidates)
        assert confirmation.kind != "not_understood" and confirmation.source == "speech", confirmation
        assert confirmation.kind in offer and (not confirmation.structure or confirmation.structure in offer)
        again = client.say_text("yes")
        assert again.kind == "not_understood" and "nothing to confirm" in again.error
    else:
        assert confirmation.kind == "not_understood" and "nothing to confirm" in confirmation.error
    # a reply to nothing, and "no", never act
    assert client.say_text("no").kind == "not_understood"


def test_bad_input_is_refused_and_the_node_keeps_running(command):
    client, launcher, _ = command
    since = len(client.heard)
    client.audio_pub.publish(AudioChunk(sample_rate_hz=44100, channels=1, samples=[0] * 4410, end_of_utterance=True))
    assert client.spin_until(lambda: any("44100 Hz" in h for h in client.heard[since:]), 30)
    client.audio_pub.publish(AudioChunk(sample_rate_hz=16000, channels=1, samples=[], end_of_utterance=True))
    assert client.spin_until(lambda: any("empty" in h for h in client.heard[since:]), 30)
    long = client.say_text("show " * 2000)
    assert long is not None and long.kind == "not_understood" and "longer" in long.error
    off_topic = client.say_text("what a nice day outside")
    assert off_topic.kind == "not_understood"
    assert client.say_text("take a shot").kind == "acquire"          # still serving
    assert all(p.poll() is None for p in launcher.processes.values())


def test_fluorosam_say_types_and_speaks_into_the_running_node(command):
    """The CLI users and the README rely on: `fluorosam say [--type] "..."`."""
    import subprocess
    import sys

    for extra, text, expected in ((["--type"], "take a shot", "intent: acquire"),
                                  ([], "show me the liver", "intent: show {'structure': 'liver'}")):
        completed = subprocess.run([sys.executable, "-m", "fluorosam_ros.cli", "say", *extra, text,
                                    "--wait", "120"], capture_output=True, text=True, timeout=200)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert expected in completed.stdout, completed.stdout
