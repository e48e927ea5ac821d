"""Reliability and safety, measured (issue 8): ONE table of the bad inputs tried per boundary
and kind, how many were refused correctly, wrongly accepted or crashed something, the faults
injected and recovered from, and the load figures.

    scripts/run.sh python bench/bench_reliability.py                # everything; load for 60 s
    scripts/run.sh python bench/bench_reliability.py --duration 12 --only fuzz,load   # the CI variant

Phases:
  fuzz    random malformed inputs (hypothesis, fixed seed) at every in-process boundary: images,
          C-arm state messages, collimation, poses, the planner's relative moves, the language
          parser, the predictor's prompts, audio chunks, checkpoints, dataset shards;
  system  sim_demo (all four nodes): malformed messages at every topic, then the good requests
          every node must still answer;
  faults  in the same system: kill and restart segmentation_node, then command_node; kill
          carm_sim in the middle of a planner move;
  load    carm_sim publishes 512^2 frames at 30 Hz for --duration s while segmentation_node
          embeds on arrival (newest frame first) and command_node parses bursts of commands at
          10 Hz; queue depth, processed rate, latency p50/p99, RSS growth, intents lost.

Exit status 0 when nothing crashed, nothing bad was accepted, every fault was recovered from
and no intent was lost. The table also goes to bench/results/reliability.json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PHASES = ("fuzz", "system", "faults", "load")


def _ros_environment() -> None:
    # like the test suite: a domain of our own, traffic on this machine only
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_profile.xml"))
    os.environ.setdefault("ROS_LOG_DIR", str(REPO_ROOT / ".ros" / "log"))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_fuzz(ledger, examples: int) -> None:
    from fluorosam_ros.reliability.fuzz import run_all

    log(f"fuzz: {examples} random inputs per boundary")
    run_all(ledger, examples=examples, heavy_examples=max(5, examples // 3), log=log)


def run_system(ledger, phases: set[str], log_dir: Path) -> None:
    import rclpy

    from fluorosam_ros.reliability.system import (
        BadInputs,
        Probe,
        carm_vanishes_mid_move,
        dead_nodes,
        good_requests,
        kill_and_restart,
        launched_system,
        read_logs,
        segments_a_new_frame,
    )

    nodes = ("carm_sim", "segmentation_node", "planner_node", "command_node")
    log(f"system: sim_demo (logs in {log_dir})")
    with launched_system("sim_demo.launch.yaml", log_dir, image_size_px=128, time_scale="2.0",
                         speech_enabled="false") as launcher:
        probe = Probe.create("bench_reliability_probe")
        try:
            ready = (probe.wait_until_ready(120.0) and probe.wait_for_frame(timeout_s=60.0) is not None
                     and probe.view_client.wait_for_server(timeout_sec=180.0)
                     and probe.segment_client.wait_for_service(timeout_sec=180.0)
                     and probe.text("stop", timeout_s=120.0) is not None)
            if not ready:
                ledger.note("sim_demo did not come up: " + read_logs(log_dir)[-1500:])
                return
            if "system" in phases:
                BadInputs(probe, launcher, ledger, log).all()
                checks = good_requests(probe)
                for name, ok in checks.passed.items():
                    ledger.figure(f"after the bad inputs: {name}", "ok" if ok else f"FAILED {checks.details[name]}",
                                  "", "answers", ok, section="system")
            if "faults" in phases:
                log("faults: kill/restart segmentation_node, command_node; carm_sim mid-move")

                def segments() -> bool:
                    return segments_a_new_frame(probe)

                def understands() -> bool:
                    intent = probe.text("stop", timeout_s=5.0)
                    return intent is not None and intent.kind == "stop"

                kill_and_restart(probe, launcher, ledger, "segmentation_node", segments,
                                 [n for n in nodes if n != "segmentation_node"])
                kill_and_restart(probe, launcher, ledger, "command_node", understands,
                                 [n for n in nodes if n != "command_node"], timeout_s=240.0)
                carm_vanishes_mid_move(probe, launcher, ledger)
            dead = dead_nodes(launcher)
            ledger.figure("nodes alive at the end (sim_demo)", f"{len(nodes) - len(dead)} of {len(nodes)}", "",
                          "all", not dead, section="system")
        finally:
            probe.close()
            rclpy.try_shutdown()


def run_load_phase(ledger, duration: float, publisher: str, log_dir: Path) -> None:
    from fluorosam_ros.reliability.system import run_load

    log(f"load: 512^2 frames at 30 Hz for {duration:g} s, commands at 10 Hz in bursts")
    try:
        result = run_load(log_dir, duration_s=duration, publisher=publisher, log=log)
    except RuntimeError as error:  # a node died or the system did not come up
        ledger.figure("load run", f"FAILED: {str(error)[:300]}", "", "completes", False)
        return
    result.record(ledger)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases of {PHASES}")
    parser.add_argument("--examples", type=int, default=40, help="random inputs per in-process boundary")
    parser.add_argument("--publisher", choices=("carm_sim", "test"), default="carm_sim",
                        help="who publishes the load frames: carm_sim (image_rate_hz) or this process "
                             "(a cached frame restamped at 30 Hz, for a C-arm that cannot keep up)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "reliability.json")
    args = parser.parse_args(argv)
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    _ros_environment()

    from fluorosam_ros.reliability import Ledger

    ledger = Ledger()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench_reliability_"))
    if "fuzz" in phases:
        run_fuzz(ledger, args.examples)
    if phases & {"system", "faults"}:
        run_system(ledger, phases, work / "system_logs")
    if "load" in phases:
        run_load_phase(ledger, args.duration, args.publisher, work / "load_logs")
    ledger.note(f"phases {sorted(phases)}, {time.monotonic() - started:.0f} s in all; node logs under {work}")
    ledger.to_json(args.json)
    print(ledger.markdown())
    for note in ledger.notes:
        print(f"\nnote: {note}")
    problems = ledger.problems()
    if problems:
        print("\nproblems:\n- " + "\n- ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
