"""The CI variant of `bench/bench_reliability.py`: random bad inputs at every in-process
boundary, then carm_sim publishing 512^2 frames at 30 Hz for 12 s while segmentation_node embeds
on arrival and command_node parses bursts of commands at 10 Hz. Nothing crashes, no bad input
is accepted, no intent is lost, the node never queues more than one frame, and its memory shows
no gross leak. (The full run, with the whole system under bad input and faults, 60 s of load and
the < 5 % RSS goal, is the bench command.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluorosam_ros.reliability import Ledger

pytestmark = [pytest.mark.ros, pytest.mark.timeout(400)]
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_short_bench_run_crashes_nothing_and_loses_no_intent(tmp_path, ledger):
    out = tmp_path / "reliability.json"
    run = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "bench_reliability.py"), "--only", "fuzz,load",
                          "--duration", "12", "--examples", "8", "--json", str(out)],
                         capture_output=True, text=True, timeout=380, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    result = Ledger.from_dict(data)
    ledger.merge(result)
    print(run.stdout)
    assert data["totals"]["crashes"] == 0, result.problems()
    assert data["totals"]["tried"] >= 50
    figures = {row["figure"]: row for row in data["load"]}
    intents = figures["commands at 10 Hz in bursts: intents / sent"]
    received, sent = (int(v) for v in intents["value"].split(" / "))
    assert sent >= 20 and received == sent, intents
    assert figures["queue depth in the node (frames waiting, max)"]["value"] <= 1
    # the < 5 % goal is judged on the 60 s bench (20 s of warm-up); 12 s only catch a gross leak
    rss = figures["segmentation_node RSS growth after warm-up"]
    assert rss["value"] < 15.0, rss
    assert data["totals"]["accepted"] == 0 and run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-2000:]
