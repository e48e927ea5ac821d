"""Planner time per request on the CPU (issue 6: <= 2 s excluding simulated motion), with what it
buys, for three localisations on the same held-out requests in the same run:

  ours   fused, the twin registered to the frames by intensity (image_registration), masks checked;
  peer   fused, the previous design: the twin aligned to the masks only (image_registration off);
  floor  twin, the prior as given (no registration at all): the cost of planning alone.

Each runs the bundled FluoroSAM model as the segmenter (or ground-truth masks with --truth) on the
first `--requests` of `fluorosam evaluate-control`'s request set; the C-arm moves instantly, so
the time is compute (rendering the simulated acquisitions is reported apart).

    scripts/run.sh python bench/bench_control.py [--requests 12] [--truth]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def configurations():
    from fluorosam_ros.control.config import PlannerConfig

    ours = PlannerConfig.from_yaml()
    peer = replace(ours, image_registration=replace(ours.image_registration, enabled=False))
    floor = replace(ours, localisation_mode="twin")
    return {"ours (image registration)": ours, "peer (mask alignment only)": peer, "floor (twin as given)": floor}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--truth", action="store_true", help="ground-truth masks instead of the bundled model")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "output" / "bench" / "control.json")
    args = parser.parse_args()

    from fluorosam_ros.evaluation.control import ControlEvalConfig, ControlEvaluator, summarise
    from fluorosam_ros.model.build import build_model, bundled_checkpoint
    from fluorosam_ros.model.predictor import FluoroSAMPredictor
    from fluorosam_ros.twin.config import TwinConfig

    twin = TwinConfig()
    patient = twin.load_patient()
    renderer, detector = twin.build_renderer(patient), twin.detector()
    kind = "truth" if args.truth else "model"
    predictor = None if args.truth else FluoroSAMPredictor(build_model("fluorosam_cpu_small",
                                                                       bundled_checkpoint("fluorosam_cpu_small")))
    results = {}
    for label, planner in configurations().items():
        evaluator = ControlEvaluator(patient, renderer, detector, ControlEvalConfig(segmenters=(kind,)), planner,
                                     predictor)
        report = evaluator.run(evaluator.requests()[:args.requests], progress=True)
        results[label] = summarise(report.records)
    ours_s = results["ours (image registration)"]["compute_excluding_render_s"]
    print(f"\n{args.requests} requests, segmenter: {kind}; seconds per request exclude the simulated motion "
          f"and rendering (goal <= 2 s)\n")
    print("| localisation | s / request | vs ours | success | centroid error (mm) | box precision | area |")
    print("|---|---|---|---|---|---|---|")
    for label, summary in results.items():
        seconds = summary["compute_excluding_render_s"]
        print(f"| {label} | {seconds:.2f} | {seconds / ours_s:.2f}x | {100 * summary['success']:.0f}% | "
              f"{summary['centroid_error_mm']:.1f} | {summary['box_precision']:.2f} | "
              f"{100 * summary['collimated_area_fraction']:.0f}% |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
