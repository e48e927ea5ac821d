"""command_node: typed and spoken commands -> fluorosam_ros/Intent.

Subscribes /command/text (std_msgs/String) and /command/audio (fluorosam_ros/AudioChunk, PCM16
mono at 16 kHz; an utterance ends with end_of_utterance or after `silence_timeout_s` without
chunks). Publishes /command/intent and echoes what it heard and understood on /command/heard.
All understanding lives in fluorosam_ros.language; this node only translates messages.

A spoken command the action gate held back (heard, but not surely) is offered back on
/command/heard; "yes" (spoken or typed) within `confirm_timeout_s` carries it out, and the next
utterance ends the offer either way (fluorosam_ros.language.confirmation).

Text and audio have separate callback groups, so a typed "stop" is answered while speech is
being decoded. Bad input (wrong rate, empty, over-long) is logged, answered with a
not_understood intent or refused on /command/heard, and never stops the node.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Header, String

from fluorosam_ros.language.confirmation import ConfirmationConfig, ReadBack, reply_to, spoken_reply
from fluorosam_ros.language.intents import Intent, not_understood
from fluorosam_ros.language.parser import CommandParser, ParserConfig
from fluorosam_ros.language.speech import SpeechConfig
from fluorosam_ros.msg import AudioChunk
from fluorosam_ros.msg import Intent as IntentMsg

from .common import RELIABLE_QOS, declare, run


def intent_to_msg(intent: Intent, header: Header) -> IntentMsg:
    return IntentMsg(header=header, kind=intent.kind, structure=intent.structure, view=intent.view,
                     direction=intent.direction, amount=float(intent.amount), unit=intent.unit,
                     confidence=float(intent.confidence), source_text=intent.source_text[:500],
                     source=intent.source, candidates=list(intent.candidates)[:5], error=intent.error)


def audio_refusal(sample_rate_hz: int, channels: int, expected_rate_hz: int, speech_enabled: bool = True) -> str:
    """Why an AudioChunk is refused ("" when it is taken). A malformed chunk is named as such
    even when speech is off, so that its sender learns what is wrong with it."""
    if sample_rate_hz != expected_rate_hz:
        return f"audio at {sample_rate_hz} Hz; resample to {expected_rate_hz} Hz PCM16 mono"
    if channels not in (0, 1):
        return f"{channels} channels; send mono"
    if not speech_enabled:
        return "speech is off (speech_enabled: false, or its engine failed to load: see the node log)"
    return ""


class CommandNode(Node):
    def __init__(self) -> None:
        super().__init__("command_node")
        defaults = ParserConfig()
        config = ParserConfig(
            threshold=declare(self, "threshold", defaults.threshold, "below: not_understood"),
            motion_threshold=declare(self, "motion_threshold", defaults.motion_threshold,
                                     "an intent that moves or fires needs this confidence"),
            max_text_chars=declare(self, "max_text_chars", defaults.max_text_chars, "longer text is refused"),
            use_embeddings=declare(self, "use_embeddings", True, "MiniLM fallback for paraphrases/questions"))
        self.speech_enabled = declare(self, "speech_enabled", True, "decode /command/audio (speech_engine)")
        engine = declare(self, "speech_engine", "ctc", "ctc: our acoustic model (weights/command_asr.pt); "
                         "pocketsphinx: its en-US model with our command language model")
        self.sample_rate_hz = declare(self, "sample_rate_hz", 16000, "the only rate accepted on /command/audio")
        self.silence_timeout_s = declare(self, "silence_timeout_s", 1.0,
                                         "decode an utterance this long after its last chunk")
        self.max_utterance_s = declare(self, "max_utterance_s", 15.0, "longer audio is refused")
        speech_defaults = SpeechConfig()
        reject_gap = declare(self, "reject_gap", speech_defaults.reject_gap,
                             "speech whose acoustic fit (nat per frame) is below this is not accepted")
        motion_gap = declare(self, "motion_gap", speech_defaults.motion_gap,
                             "speech that moves or fires needs this stricter fit")
        ctc_reject_gap = declare(self, "ctc_reject_gap", speech_defaults.ctc_reject_gap,
                                 "as reject_gap, for speech_engine ctc (ln per output step)")
        ctc_motion_gap = declare(self, "ctc_motion_gap", speech_defaults.ctc_motion_gap,
                                 "as motion_gap, for speech_engine ctc")
        ctc_word_gap = declare(self, "ctc_word_gap", speech_defaults.ctc_word_gap,
                               "speech_engine ctc: the worst word of an acting intent needs this fit")
        ctc_action_gate = declare(self, "ctc_action_gate", speech_defaults.ctc_action_gate,
                                  "speech_engine ctc: the learned action gate (\"\" = weights/command_gate.json, "
                                  "a path, or off = the ctc_* thresholds)")
        confirm_timeout_s = declare(self, "confirm_timeout_s", ConfirmationConfig().timeout_s,
                                    "a held-back spoken command may be confirmed with 'yes' this long; 0: off")
        self.frame_id = declare(self, "frame_id", "", "header frame of published intents")

        started = time.perf_counter()
        self.parser = CommandParser(config=config)
        self.parser.warm_up()
        try:
            self.read_back = ReadBack(ConfirmationConfig(timeout_s=confirm_timeout_s))
        except ValueError as error:
            self.get_logger().error(f"confirm_timeout_s: {error}; read-back is off")
            self.read_back = ReadBack(ConfirmationConfig(timeout_s=0.0))
        self.recognizer = None
        if self.speech_enabled:
            from fluorosam_ros.language.speech import ENGINES, make_recognizer

            if engine not in ENGINES:
                self.get_logger().error(f"speech_engine {engine!r} is not one of {ENGINES}: speech is off")
                self.speech_enabled = False
            else:
                try:
                    self.recognizer = make_recognizer(SpeechConfig(
                        engine=engine, sample_rate_hz=self.sample_rate_hz, reject_gap=reject_gap,
                        motion_gap=motion_gap, ctc_reject_gap=ctc_reject_gap, ctc_motion_gap=ctc_motion_gap,
                        ctc_word_gap=ctc_word_gap, ctc_action_gate=ctc_action_gate,
                        max_utterance_s=self.max_utterance_s))
                except (RuntimeError, OSError, ImportError, ValueError) as error:   # e.g. damaged weights
                    self.get_logger().error(f"speech engine {engine} failed to load ({error}): speech is off, "
                                            "typed commands still work")
                    self.speech_enabled = False
        gate = "learned action gate" if getattr(self.recognizer, "action_gate", None) else "threshold gate"
        self.get_logger().info(f"ready in {time.perf_counter() - started:.1f} s "
                               f"(speech {f'{engine}, {gate}' if self.recognizer else 'off'})")

        self._audio: list[np.ndarray] = []
        self._audio_lock = threading.Lock()
        self._last_chunk = 0.0
        self.counts = {"text": 0, "audio_utterances": 0, "refused": 0, "not_understood": 0}
        self.last_error = ""

        self.intent_pub = self.create_publisher(IntentMsg, "/command/intent", RELIABLE_QOS)
        self.heard_pub = self.create_publisher(String, "/command/heard", RELIABLE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.create_subscription(String, "/command/text", self._on_text, RELIABLE_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        audio_group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(AudioChunk, "/command/audio", self._on_audio, RELIABLE_QOS,
                                 callback_group=audio_group)
        self.create_timer(0.2, self._check_silence, callback_group=audio_group)
        self.create_timer(1.0, self._diagnostics, callback_group=MutuallyExclusiveCallbackGroup())

    # ---- output ------------------------------------------------------------------------
    def _publish(self, intent: Intent, heard: str) -> None:
        if not intent.understood:
            self.counts["not_understood"] += 1
        try:
            header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
            self.intent_pub.publish(intent_to_msg(intent, header))
            self.heard_pub.publish(String(data=f"{heard} -> {intent.describe()}"))
        except Exception as error:  # a transport hiccup must never take the node down
            self.last_error = f"publish failed: {error}"
            self.get_logger().error(self.last_error)
        self.get_logger().info(f"{intent.source}: {heard!r} -> {intent.describe()}")

    def _refuse(self, reason: str) -> None:
        self.counts["refused"] += 1
        self.last_error = reason
        self.get_logger().warning(f"refused: {reason}")
        try:
            self.heard_pub.publish(String(data=f"refused: {reason}"))
        except Exception as error:
            self.get_logger().error(f"publish failed: {error}")

    # ---- text --------------------------------------------------------------------------
    def _on_text(self, msg: String) -> None:
        self.counts["text"] += 1
        text = msg.data
        try:
            intent = self.parser.parse(text, source="text")
        except Exception as error:  # never let one odd input stop the node
            self.get_logger().error(f"parser failed on {text[:80]!r}: {error}")
            intent = not_understood(text[:200], f"internal error: {error}")
        intent = self.read_back.handle(intent, reply_to(text), time.monotonic())
        shown = text if len(text) <= 120 else text[:117] + "..."
        if not intent.understood and intent.error.startswith("input longer"):
            self.get_logger().warning(f"refused {len(text)} characters of text")
        self._publish(intent, shown)

    # ---- audio -------------------------------------------------------------------------
    def _on_audio(self, msg: AudioChunk) -> None:
        reason = audio_refusal(msg.sample_rate_hz, msg.channels, self.sample_rate_hz, self.recognizer is not None)
        if reason:
            self._refuse(reason)
            return
        samples = np.asarray(msg.samples, dtype=np.int16)
        with self._audio_lock:
            if samples.size:
                self._audio.append(samples)
                self._last_chunk = time.monotonic()
            total = sum(a.size for a in self._audio)
            if total > self.max_utterance_s * self.sample_rate_hz:
                self._audio = []
                self._refuse(f"utterance longer than {self.max_utterance_s:g} s dropped")
                return
        if msg.end_of_utterance:
            self._decode()

    def _check_silence(self) -> None:
        if self._audio and time.monotonic() - self._last_chunk > self.silence_timeout_s:
            self._decode()

    def _decode(self) -> None:
        with self._audio_lock:
            audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
            self._audio = []
        if audio.size == 0:
            self._refuse("empty utterance")
            return
        self.counts["audio_utterances"] += 1
        started = time.perf_counter()
        try:
            recognition = self.recognizer.recognize(audio)
            intent = self.recognizer.interpret(recognition, self.parser)
            intent = self.read_back.handle(intent, spoken_reply(recognition), time.monotonic())
        except Exception as error:
            self.get_logger().error(f"speech decoding failed: {error}")
            intent = not_understood("", f"internal error: {error}", source="speech")
            recognition = None
        heard = recognition.raw_text if recognition is not None else ""
        gap = recognition.gap if recognition is not None else math.nan
        self.get_logger().info(f"decoded {audio.size / self.sample_rate_hz:.2f} s of audio in "
                               f"{(time.perf_counter() - started) * 1e3:.0f} ms (gap {gap:.2f})")
        self._publish(intent, heard or "(nothing accepted)")

    def _diagnostics(self) -> None:
        level = DiagnosticStatus.WARN if self.last_error else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name="command_node", hardware_id="language",
                                  message=self.last_error or "ready",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in self.counts.items()])
        try:
            self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                  status=[status]))
        except Exception:
            pass


def main() -> None:
    run(CommandNode, threads=3)


if __name__ == "__main__":
    main()
