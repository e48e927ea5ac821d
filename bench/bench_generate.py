"""Data-engine throughput: `fluorosam generate` with its own workers at 256^2, all masks, text and
tools, on 2 cores; printed beside the renderer alone (the bound) measured in the same run.

    scripts/run.sh python bench/bench_generate.py [--images 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def renderer_only(size: int, count: int) -> float:
    """Images/s of the bare renderer (all structures) on the same kind of views: the bound."""
    import numpy as np

    from fluorosam_ros.data.anatomy import PatientAnatomy
    from fluorosam_ros.data.views import ViewSampler, ViewSamplerConfig
    from fluorosam_ros.geometry.carm import CArmState
    from fluorosam_ros.twin.patient import Patient
    from fluorosam_ros.twin.renderer import CpuRenderer

    patient = Patient.default()
    renderer = CpuRenderer(patient)
    sampler = ViewSampler(PatientAnatomy(patient), ViewSamplerConfig(image_size_px=size))
    rng = np.random.default_rng(0)
    views = [sampler.random(rng) for _ in range(count)]
    for view in views[:3]:  # compile, oriented copies
        renderer.render(CArmState(view.config, view.pose))
    started = time.perf_counter()
    for view in views:
        renderer.render(CArmState(view.config, view.pose))
    return count / (time.perf_counter() - started)


def main() -> int:
    from fluorosam_ros.data.generate import GeneratorConfig, generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--deformation-probability", type=float, default=0.5)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="fluoroseg_bench_"))
    try:
        config = replace(GeneratorConfig(), out_dir=str(out), images=args.images, image_size_px=args.size,
                         workers=args.workers, shard_size=args.shard_size,
                         deformation_probability=args.deformation_probability)
        started = time.perf_counter()
        card = generate(config, progress=True)
        elapsed = time.perf_counter() - started
        bound = renderer_only(args.size, 30)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rate = args.images / elapsed
    stages = card["seconds_per_image_by_stage"]
    per_image_cpu = sum(stages.values())
    print(f"\nData engine, {args.size}^2, {args.workers} workers on 2 cores, {args.images} images in "
          f"{len(card['view_families'])} view families (deformation p={args.deformation_probability} per shard):")
    print(f"  throughput           {rate:.2f} img/s  (goal >= 2; paper: 6.5 img/s on an A6000)")
    print(f"  renderer alone       {bound:.2f} img/s per process  -> generator/renderer ratio "
          f"{rate / bound:.2f} (x{args.workers} workers)")
    print("  seconds per image by stage (inside a worker): "
          + ", ".join(f"{k.replace('_s', '')} {v:.3f}" for k, v in stages.items()))
    shard_overhead = max(elapsed * args.workers / args.images - per_image_cpu, 0.0)
    print(f"  per-shard set-up (patient load, deformation, anatomy, renderer init) ~{shard_overhead:.3f} s/img")
    bound_stage = max(stages, key=stages.get) if stages else "?"
    print(f"  bound by: {bound_stage.replace('_s', '')} ({stages.get(bound_stage, 0) / max(per_image_cpu, 1e-9):.0%} "
          f"of per-image work) and per-shard set-up; 2 cores cap the workers")
    (REPO_ROOT / "bench" / "results").mkdir(exist_ok=True)
    (REPO_ROOT / "bench" / "results" / "generate.json").write_text(json.dumps(
        {"images_per_s": rate, "renderer_images_per_s": bound, "stages": stages}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
