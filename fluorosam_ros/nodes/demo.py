"""The simulated, language-driven C-arm demo (the README's main command).

Starts carm_sim, segmentation_node, command_node and planner_node as separate processes from
launch/sim_demo.launch.yaml and talks to them over DDS, like a user would: typed requests on
/command/text, one spoken request (espeak-ng audio on /command/audio) and "stop". For each it
prints what was understood, what the planner did and the result's figures, and writes
before/after overlays (mask outline, collimator, structure name), a contact sheet, report.json
and an MCAP recording of every topic. `--interactive` lets a person type commands instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Header, String

from fluorosam_ros.control.anatomy import UnknownStructure, resolve_target
from fluorosam_ros.evaluation.metrics import dice
from fluorosam_ros.launch_runner import Launcher, load_launch_file
from fluorosam_ros.msg import AudioChunk
from fluorosam_ros.msg import Intent as IntentMsg
from fluorosam_ros.msg import PlanEvent
from fluorosam_ros.visualization import contact_sheet, overlay

from .commander import CArmCommander, CArmFrame
from .common import RELIABLE_QOS, PACKAGE_ROOT
from .conversions import carm_config_from_msg, carm_state_from_msg, collimation_from_msg, image_from_msg
from .say import audio_chunks

ACTING_KINDS = ("show", "collimate", "move", "rotate", "tilt", "zoom", "undo", "acquire", "where", "stop")


@dataclass(frozen=True)
class DemoRequest:
    text: str
    spoken: bool = False
    stop_after_s: float | None = None   # send "stop" this long after the request


DEMO_REQUESTS = [
    DemoRequest("show me the left lung"),
    DemoRequest("lateral view of the spine"),
    DemoRequest("collimate to the heart"),
    DemoRequest("show me the liver", spoken=True),
    DemoRequest("move left two centimetres"),
    DemoRequest("show the stomach in a lateral view", stop_after_s=0.5),
]


@dataclass
class StepReport:
    text: str
    source: str
    understood: str = ""
    intent: dict = field(default_factory=dict)
    event: dict = field(default_factory=dict)
    before_png: str = ""
    after_png: str = ""
    structure_prompt: str = ""
    mask_found: bool = False
    dice_vs_truth: float | None = None
    seconds: float = 0.0


class DemoClient(CArmCommander):
    """The commander plus what a demo watches: intents, what command_node heard."""

    def __init__(self) -> None:
        super().__init__("demo_client")
        self.intents: list[IntentMsg] = []
        self.heard: list[str] = []
        self.audio_pub = self.create_publisher(AudioChunk, "/command/audio", RELIABLE_QOS)
        self.create_subscription(IntentMsg, "/command/intent", self.intents.append, RELIABLE_QOS)
        self.create_subscription(String, "/command/heard", lambda m: self.heard.append(m.data), RELIABLE_QOS)

    def wait_for_intent(self, since: int, source: str, timeout_s: float = 60.0) -> IntentMsg | None:
        def found():
            return next((i for i in self.intents[since:] if i.source == source), None)
        self._spin_until(lambda: found() is not None, timeout_s)
        return found()

    def wait_for_plan_event(self, since: int, source_text: str, timeout_s: float) -> PlanEvent | None:
        def found():
            return next((e for e in self.events[since:] if e.source_text == source_text), None)
        self._spin_until(lambda: found() is not None, timeout_s)
        return found()

    def speak(self, samples: np.ndarray, rate: int) -> None:
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id="microphone")
        for chunk in audio_chunks(samples, rate, header):
            self.audio_pub.publish(chunk)


class GroundTruth:
    """The twin's own masks at a frame's pose: what the overlay's Dice is measured against."""

    def __init__(self) -> None:
        from fluorosam_ros.twin.patient import Patient
        from fluorosam_ros.twin.renderer import CpuRenderer

        self.patient = Patient.default()
        self.renderer = CpuRenderer(self.patient)
        corners = self.patient.corners_world()
        self.bounds = (corners.min(axis=0) - 150.0, corners.max(axis=0) + 150.0)

    def names(self):
        return self.patient.structure_names.values()

    def mask(self, state_msg, members) -> np.ndarray:
        state = carm_state_from_msg(state_msg, carm_config_from_msg(state_msg, *self.bounds))
        result = self.renderer.render(state, structures=list(members))
        return np.logical_or.reduce([result.mask(name) for name in members])


def _slots(intent: IntentMsg) -> str:
    parts = [f"{name}={value}" for name, value in (("structure", intent.structure), ("view", intent.view),
                                                   ("direction", intent.direction)) if value]
    if np.isfinite(intent.amount):
        parts.append(f"amount={intent.amount:g}{intent.unit}")
    return f"{intent.kind}({', '.join(parts)}) confidence {intent.confidence:.2f}"


def _event_line(event: PlanEvent) -> str:
    if not event.success:
        return f"FAILED ({event.failure_reason}): {event.message}"
    figures = [event.message]
    if event.coverage >= 0:
        figures.append(f"coverage {100 * event.coverage:.1f}%")
    if event.centring_error_px >= 0:
        figures.append(f"centring error {event.centring_error_px:.1f} px")
    if event.collimated_area_fraction >= 0:
        figures.append(f"collimated area {100 * event.collimated_area_fraction:.0f}% of the field")
    figures.append(f"{event.acquisitions} acquisition(s), {event.wall_time_s:.1f} s")
    return "; ".join(figures)


class Demo:
    def __init__(self, client: DemoClient, out_dir: Path, truth: GroundTruth | None) -> None:
        self.client, self.out_dir, self.truth = client, out_dir, truth
        self.pictures = []
        self.steps: list[StepReport] = []

    def picture(self, frame: CArmFrame, name: str, masks=(), labels=(), caption: str = "") -> str:
        collimation = collimation_from_msg(frame.state.collimation) if frame.state else None
        image = overlay(frame.pixels, collimation, masks, labels, caption)
        path = self.out_dir / name
        image.save(path)
        self.pictures.append(image)
        return path.name

    def run_request(self, index: int, request: DemoRequest) -> StepReport:
        client = self.client
        started = time.perf_counter()
        before = client.wait_for_frame(timeout_s=15.0)
        report = StepReport(request.text, "speech" if request.spoken else "text")
        if before is not None:
            report.before_png = self.picture(before, f"step_{index:02d}_before.png", caption=f"{index}. before")
        intents_before, events_before = len(client.intents), len(client.events)
        sent_at = client.get_clock().now()
        if request.spoken:
            from fluorosam_ros.language.audio import SAMPLE_RATE, synthesize

            client.speak(synthesize(request.text), SAMPLE_RATE)
        else:
            client.send_text(request.text)
        print(f"\n[demo] {index}. {'said' if request.spoken else 'typed'}: {request.text!r}", flush=True)
        if request.stop_after_s is not None:
            client.spin_for(request.stop_after_s)
            client.send_text("stop")
            print("[demo]    typed: 'stop'", flush=True)
        intent = client.wait_for_intent(intents_before, report.source)
        if intent is None:
            report.understood = "no intent from command_node"
            print(f"[demo]    {report.understood}", flush=True)
            return self.finish(report, started)
        report.understood = _slots(intent)
        report.intent = {"kind": intent.kind, "structure": intent.structure, "view": intent.view,
                         "direction": intent.direction, "confidence": intent.confidence,
                         "heard": intent.source_text}
        print(f"[demo]    heard {intent.source_text!r} -> understood {report.understood}", flush=True)
        event = client.wait_for_plan_event(events_before, intent.source_text, 300.0)
        if event is None:
            print("[demo]    the planner did not answer", flush=True)
            return self.finish(report, started)
        report.event = {"kind": event.kind, "success": event.success, "failure_reason": event.failure_reason,
                        "message": event.message, "coverage": event.coverage,
                        "centring_error_px": event.centring_error_px,
                        "collimated_area_fraction": event.collimated_area_fraction,
                        "acquisitions": event.acquisitions, "wall_time_s": event.wall_time_s}
        print(f"[demo]    planner: {_event_line(event)}", flush=True)
        if request.stop_after_s is not None:
            stop = client.wait_for_plan_event(events_before, "stop", 30.0)
            print(f"[demo]    stop: {_event_line(stop) if stop else 'no answer'}", flush=True)
        after = client.wait_for_frame(newer_than=sent_at, timeout_s=10.0) if event.acquisitions else None
        if after is not None:
            self.after_picture(index, report, intent, after)
        return self.finish(report, started)

    def after_picture(self, index: int, report: StepReport, intent: IntentMsg, frame: CArmFrame) -> None:
        masks, labels = [], []
        caption = f"{index}. {report.text}"
        if intent.structure and self.truth is not None:
            try:
                target = resolve_target(intent.structure, self.truth.names())
            except UnknownStructure:
                target = None
            if target is not None:
                report.structure_prompt = target.prompt
                response = self.client.segment(text=target.prompt)
                if response is not None and response.success and response.result.found:
                    mask = image_from_msg(response.result.mask) > 0
                    report.mask_found = True
                    masks, labels = [mask], [target.prompt]
                    if frame.state is not None:
                        report.dice_vs_truth = dice(mask, self.truth.mask(frame.state, target.members))
        report.after_png = self.picture(frame, f"step_{index:02d}_after.png", masks, labels, caption)
        if report.dice_vs_truth is not None:
            print(f"[demo]    '{report.structure_prompt}' mask Dice vs the twin's ground truth: "
                  f"{report.dice_vs_truth:.2f} -> {report.after_png}", flush=True)

    def finish(self, report: StepReport, started: float) -> StepReport:
        report.seconds = time.perf_counter() - started
        self.steps.append(report)
        return report


def start_recorder(path: Path):
    """Record every topic to MCAP on its own executor thread; returns (recorder, executor)."""
    from .recorder import TopicRecorder

    recorder = TopicRecorder(path)
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    threading.Thread(target=executor.spin, name="demo_recorder", daemon=True).start()
    return recorder, executor


def wait_until_up(client: DemoClient) -> None:
    print("[demo] waiting for the nodes (patient load, model load, first render) ...", flush=True)
    if not client.wait_until_ready(timeout_s=180) or client.wait_for_frame(timeout_s=60) is None:
        raise RuntimeError("carm_sim did not come up")
    if not client.view_client.wait_for_server(timeout_sec=180):
        raise RuntimeError("planner_node did not come up")
    if not client.segment_client.wait_for_service(timeout_sec=180):
        raise RuntimeError("segmentation_node did not come up")
    # both directions must be matched with the right nodes (the recorder in this process also
    # subscribes to everything), or the first request or its answer is lost
    def has(infos, node: str) -> bool:
        return any(info.node_name == node for info in infos)

    def matched() -> bool:
        return (has(client.get_subscriptions_info_by_topic("/command/text"), "command_node")
                and has(client.get_subscriptions_info_by_topic("/command/audio"), "command_node")
                and has(client.get_publishers_info_by_topic("/command/intent"), "command_node")
                and has(client.get_publishers_info_by_topic("/plan/events"), "planner_node"))

    if not client._spin_until(matched, 180):
        raise RuntimeError("command_node or planner_node did not come up")
    client.spin_for(1.0)  # let discovery settle so no early message is lost


def interactive(client: DemoClient, demo: Demo) -> None:
    print("\n[demo] interactive: type a request (e.g. 'show me the heart'), or speak one from another "
          "terminal with `fluorosam say \"...\"`; 'quit' ends.", flush=True)
    index = len(demo.steps)
    for line in sys.stdin:
        text = line.strip()
        if text.lower() in ("quit", "exit", "q"):
            break
        if text:
            index += 1
            demo.run_request(index, DemoRequest(text))


def run_demo(out_dir: Path, image_size_px: int, time_scale: float, requests: list[DemoRequest],
             speech: bool = True, record: bool = True, interactive_mode: bool = False,
             checkpoint: str = "") -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("step_*.png"):
        old.unlink()
    specs = load_launch_file(PACKAGE_ROOT / "launch" / "sim_demo.launch.yaml",
                             {"image_size_px": str(image_size_px), "time_scale": str(float(time_scale)),
                              "speech_enabled": str(speech).lower(), "checkpoint": checkpoint})
    if not speech:
        requests = [r for r in requests if not r.spoken]
    truth = GroundTruth()
    report: dict = {"image_size_px": image_size_px, "steps": []}
    with Launcher(specs, log_dir=out_dir / "logs") as launcher:
        rclpy.init()
        client = DemoClient()
        recorder = executor = None
        try:
            if record:
                recorder, executor = start_recorder(out_dir / "demo.mcap")
            wait_until_up(client)
            demo = Demo(client, out_dir, truth)
            if interactive_mode:
                interactive(client, demo)
            else:
                for index, request in enumerate(requests, start=1):
                    demo.run_request(index, request)
            if demo.pictures:
                contact_sheet(demo.pictures, columns=4, path=out_dir / "contact_sheet.png")
            report["steps"] = [asdict(step) for step in demo.steps]
            ended = launcher.poll()
            report["nodes_alive"] = {name: name not in ended for name in launcher.processes}
        finally:
            if recorder is not None:
                executor.shutdown(timeout_sec=2.0)
                recorder.close()
                report["mcap"] = "demo.mcap"
            client.close()
            rclpy.try_shutdown()
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    print_summary(report, out_dir)
    return report


def print_summary(report: dict, out_dir: Path) -> None:
    print("\n| # | request | understood | result | Dice vs truth | s |\n|---|---|---|---|---|---|")
    for index, step in enumerate(report["steps"], start=1):
        event = step.get("event") or {}
        result = ("ok" if event.get("success") else f"failed: {event.get('failure_reason')}") if event else "-"
        dice_text = f"{step['dice_vs_truth']:.2f}" if step.get("dice_vs_truth") is not None else "-"
        source = " (spoken)" if step["source"] == "speech" else ""
        print(f"| {index} | {step['text']}{source} | {step['understood']} | {result} | {dice_text} | "
              f"{step['seconds']:.1f} |")
    print(f"\n[demo] wrote the overlays, contact_sheet.png, report.json and demo.mcap to {out_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluorosam demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("FLUOROSAM_ROOT", ".")) / "output" / "demo")
    parser.add_argument("--image-size", type=int, default=256, help="rendered frame size in pixels")
    parser.add_argument("--time-scale", type=float, default=4.0, help="simulated motion speed-up")
    parser.add_argument("--no-speech", action="store_true", help="skip the spoken request (no espeak-ng)")
    parser.add_argument("--no-record", action="store_true", help="do not write demo.mcap")
    parser.add_argument("--interactive", action="store_true", help="type your own requests instead of the script")
    parser.add_argument("--checkpoint", default="", help="model weights (default: the bundled ones)")
    args = parser.parse_args(argv)
    try:
        report = run_demo(args.out, args.image_size, args.time_scale, DEMO_REQUESTS, speech=not args.no_speech,
                          record=not args.no_record, interactive_mode=args.interactive, checkpoint=args.checkpoint)
    except RuntimeError as error:
        print(f"[demo] failed: {error}", file=sys.stderr)
        return 1
    dead = [name for name, alive in report.get("nodes_alive", {}).items() if not alive]
    if dead:
        print(f"[demo] failed: node(s) died during the demo: {', '.join(dead)}", file=sys.stderr)
        return 1
    if not args.interactive and any(not step["intent"] for step in report["steps"]):
        print("[demo] failed: some requests got no answer", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
