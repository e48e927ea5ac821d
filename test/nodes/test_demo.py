"""The README's main job, headless, exactly as a user runs it (`fluorosam demo`), checked from
its outputs: exit code, overlays that show the requested structure, and the MCAP recording."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fluorosam_ros.recording import read_messages, topic_counts

pytestmark = [pytest.mark.ros, pytest.mark.timeout(900)]
# The bundled model's text-only masks on the demo's own frames (measured: left lung 0.53,
# spine 0.17-0.21, heart 0.61-0.68, liver 0.02-0.25): the best overlay must clearly show its
# structure, and the typical one must overlap it (random masks score ~0.05).
BEST_DICE_FLOOR = 0.5
MEDIAN_DICE_FLOOR = 0.15


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    completed = subprocess.run([sys.executable, "-m", "fluorosam_ros.cli", "demo", "--out", str(out),
                                "--image-size", "256", "--time-scale", "10"],
                               capture_output=True, text=True, timeout=850)
    return out, completed


def test_demo_exits_zero_and_answers_every_request(demo_run):
    out, completed = demo_run
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["steps"]) >= 6
    assert all(report["nodes_alive"].values())
    kinds = [step["intent"]["kind"] for step in report["steps"]]
    assert kinds.count("show") >= 3 and "collimate" in kinds and "move" in kinds
    assert any(step["source"] == "speech" for step in report["steps"]), "no spoken request"
    stopped = [step for step in report["steps"] if step["event"].get("failure_reason") == "canceled"]
    assert stopped, "the request followed by 'stop' was not canceled"
    assert "understood" in completed.stdout and "planner:" in completed.stdout


def test_overlays_exist_and_show_the_requested_structure(demo_run):
    out, _ = demo_run
    report = json.loads((out / "report.json").read_text())
    shown = [step for step in report["steps"] if step["after_png"] and step["intent"]["structure"]]
    assert len(shown) >= 3
    for step in report["steps"]:
        for key in ("before_png", "after_png"):
            if step[key]:
                picture = Image.open(out / step[key])
                assert picture.size == (256, 256) and np.asarray(picture).std() > 5
    scores = [step["dice_vs_truth"] for step in shown if step["dice_vs_truth"] is not None]
    assert scores and max(scores) >= BEST_DICE_FLOOR and float(np.median(scores)) >= MEDIAN_DICE_FLOOR, scores
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] >= 4 * 256


def test_the_recording_holds_every_topic(demo_run):
    out, _ = demo_run
    counts = topic_counts(out / "demo.mcap")
    report = json.loads((out / "report.json").read_text())
    for topic in ("/carm/image", "/carm/image_state", "/carm/state", "/command/text", "/command/audio",
                  "/command/intent", "/plan/events", "/segmentation/result", "/plan/target_state"):
        assert counts.get(topic, 0) > 0, f"{topic} missing from the recording: {counts}"
    assert counts["/command/intent"] >= len(report["steps"])
    assert counts["/carm/image"] >= sum(step["event"].get("acquisitions", 0) for step in report["steps"])
    events = [message for _, message, _ in read_messages(out / "demo.mcap", ["/plan/events"])]
    assert {event.kind for event in events} >= {"show", "collimate", "move", "stop"}
