"""The simulated C-arm demo: start the nodes as real processes, drive them over DDS, write PNGs.

For now (foundation issue) it moves the simulated C-arm through a few standard poses with
different collimations and writes each frame with the collimator drawn, plus a contact sheet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy

from fluorosam_ros.geometry.carm import CArmPose
from fluorosam_ros.geometry.collimation import Collimation
from fluorosam_ros.launch_runner import Launcher, load_launch_file
from fluorosam_ros.visualization import contact_sheet, overlay

from .commander import CArmCommander
from .conversions import collimation_from_msg


@dataclass(frozen=True)
class DemoStep:
    name: str
    alpha_deg: float
    beta_deg: float
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    field_fraction: float | None = None   # centred square collimation, fraction of the detector
    iris: bool = False


DEMO_STEPS = [
    DemoStep("AP", 0, 0),
    DemoStep("AP collimated", 0, 0, field_fraction=0.6),
    DemoStep("RAO 30", 30, 0, field_fraction=0.7),
    DemoStep("lateral", 90, 0),
    DemoStep("CAU 20, iris", 0, 20, (0.0, 0.0, -40.0), field_fraction=0.8, iris=True),
]


def collimation_for(step: DemoStep, size_px: int) -> Collimation:
    if step.field_fraction is None:
        return Collimation.open()
    side = step.field_fraction * size_px
    collimation = Collimation.centered(side, side, size_px, size_px)
    if step.iris:
        collimation = collimation.with_iris(side * 0.6, size_px / 2, size_px / 2)
    return collimation


def run_demo(out_dir: Path, image_size_px: int, time_scale: float, steps: list[DemoStep]) -> dict:
    launch_file = Path(__file__).resolve().parents[2] / "launch" / "carm_sim.launch.yaml"
    specs = load_launch_file(launch_file, {"image_size_px": str(image_size_px), "time_scale": str(time_scale)})
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"steps": []}
    with Launcher(specs, log_dir=out_dir / "logs"):
        rclpy.init()
        commander = CArmCommander("demo_commander")
        try:
            print("[demo] waiting for carm_sim (patient load and first render) ...", flush=True)
            if not commander.wait_until_ready(timeout_s=120):
                raise RuntimeError("carm_sim did not come up within 120 s (see the log above)")
            centre = np.asarray(commander.state.isocenter_mm)
            pictures = []
            for index, step in enumerate(steps, start=1):
                target = CArmPose(tuple(centre + step.offset_mm), step.alpha_deg, step.beta_deg)
                collimation = collimation_for(step, image_size_px)
                started = time.perf_counter()
                outcome = commander.move_to(target, collimation, acquire=True)
                if not outcome.succeeded:
                    raise RuntimeError(f"move '{step.name}' {outcome.status_name}: {outcome.message}")
                frame = commander.wait_for_frame(newer_than=outcome.started)
                if frame is None:
                    raise RuntimeError(f"no frame after move '{step.name}'")
                seconds = time.perf_counter() - started
                state = frame.state
                field = collimation_from_msg(state.collimation) if state else collimation
                caption = f"{index}. {step.name}  alpha={target.alpha_deg:.0f} beta={target.beta_deg:.0f}"
                picture = overlay(frame.pixels, field, caption=caption)
                path = out_dir / f"frame_{index:02d}_{step.name.split(',')[0].replace(' ', '_').lower()}.png"
                picture.save(path)
                pictures.append(picture)
                exposed = field.area_fraction(image_size_px, image_size_px)
                print(f"[demo] {caption}: {outcome.message}; exposed field {exposed:.0%}; "
                      f"{outcome.feedback_count} feedback msgs; {seconds:.1f} s -> {path.name}", flush=True)
                report["steps"].append({"name": step.name, "alpha_deg": step.alpha_deg, "beta_deg": step.beta_deg,
                                        "exposed_fraction": exposed, "seconds": seconds, "png": path.name,
                                        "state_alpha_deg": state.alpha_deg if state else None})
            contact_sheet(pictures, columns=len(pictures), path=out_dir / "contact_sheet.png")
            rejected = commander.move_to(CArmPose(tuple(centre), 150.0, 0.0), acquire=False)
            report["out_of_limit_move"] = {"status": rejected.status_name, "message": rejected.message}
            print(f"[demo] an out-of-limit request (alpha=150) was {rejected.status_name}: {rejected.message}")
        finally:
            commander.close()
            rclpy.try_shutdown()
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[demo] wrote {len(report['steps'])} frames, contact_sheet.png and report.json to {out_dir}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fluorosam demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("FLUOROSAM_ROOT", ".")) / "output" / "demo")
    parser.add_argument("--image-size", type=int, default=384, help="rendered frame size in pixels")
    parser.add_argument("--time-scale", type=float, default=4.0, help="simulated motion speed-up")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.image_size, args.time_scale, DEMO_STEPS)
    except RuntimeError as error:
        print(f"[demo] failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
