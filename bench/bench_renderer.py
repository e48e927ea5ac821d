"""Renderer benchmark: ours (numba Siddon, one pass with every structure's path length) against
diffdrr 0.6.1 (in its own venv), on the default CT at 256^2 and 512^2, in the same run.

    make bench-renderer            # or: scripts/run.sh python bench/bench_renderer.py [--sizes 256 512]

Each renderer runs in its own process so that peak memory (ru_maxrss) is its own.
Both use the same C-arm geometry: SDD 1020 mm, source-isocenter 530 mm, 300 mm detector, AP view.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = REPO_ROOT / "bench" / ".venvs" / "diffdrr"
PATIENT = REPO_ROOT / "data" / "patients" / "default"


def run_ours(size: int, repeats: int) -> dict:
    import numpy as np

    from fluorosam_ros.geometry.carm import CArmConfig, CArmPose, CArmState
    from fluorosam_ros.twin.patient import Patient
    from fluorosam_ros.twin.renderer import CpuRenderer

    patient = Patient.default()
    renderer = CpuRenderer(patient)
    config = CArmConfig.for_supine_patient().with_image_size(size)
    state = CArmState(config, CArmPose(tuple(patient.center_world), 0.0, 0.0))
    renderer.render(state, structures="all")  # JIT compile and the oriented volume copy

    def timed(structures) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = renderer.render(state, structures=structures)
            times.append(time.perf_counter() - started)
        return float(np.median(times)), result

    plain_s, _ = timed(None)
    masks_s, result = timed("all")
    return {"peer": "fluorosam_ros cpu (numba Siddon)", "size": size,
            "num_structures": len(result.structure_names), "s_per_image": plain_s,
            "s_per_image_with_masks": masks_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_in_subprocess(command: list[str], timeout_s: float) -> dict:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ))
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    subprocess.run(["bash", str(REPO_ROOT / "bench" / "peers" / "setup_diffdrr_venv.sh"), str(PEER_VENV)], check=True)
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, default=1, help="diffdrr is slow: timed renders per size")
    parser.add_argument("--ours-only", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    if args.ours_only is not None:
        print(json.dumps(run_ours(args.ours_only, args.repeats)))
        return 0

    peer_python = None if args.skip_peer else ensure_peer_venv()
    rows = []
    for size in args.sizes:
        print(f"[bench] {size}^2: ours ...", flush=True)
        ours = run_in_subprocess([sys.executable, __file__, "--ours-only", str(size), "--repeats", str(args.repeats)], 900)
        peer = None
        if peer_python is not None:
            print(f"[bench] {size}^2: diffdrr 0.6.1 (slow) ...", flush=True)
            peer = run_in_subprocess([str(peer_python), str(REPO_ROOT / "bench" / "peers" / "diffdrr_render.py"),
                                      "--ct", str(PATIENT / "ct.nii.gz"), "--mask", str(PATIENT / "labels.nii.gz"),
                                      "--size", str(size), "--sdd", "1020", "--sid", "530", "--fov-mm",
                                      f"{0.194 * 1536:.3f}", "--repeats", str(args.peer_repeats),
                                      "--mask-repeats", str(args.peer_repeats)], 3600)
        rows.append((size, ours, peer))

    print("\nRenderer benchmark (default CT 512x512x133, AP view, 2 cores; median seconds per image)")
    header = f"{'size':>6} {'ours':>8} {'ours+masks':>11} {'diffdrr':>9} {'diffdrr+masks':>14} {'speed-up':>9} {'w/ masks':>9} {'RSS ours':>9} {'RSS diffdrr':>12}"
    print(header)
    print("-" * len(header))
    for size, ours, peer in rows:
        if peer:
            plain_ratio = peer["s_per_image"] / ours["s_per_image"]
            mask_ratio = peer["s_per_image_with_masks"] / ours["s_per_image_with_masks"]
            print(f"{size:>5}² {ours['s_per_image']:>8.3f} {ours['s_per_image_with_masks']:>11.3f} "
                  f"{peer['s_per_image']:>9.2f} {peer['s_per_image_with_masks']:>14.2f} {plain_ratio:>8.1f}x "
                  f"{mask_ratio:>8.1f}x {ours['peak_rss_mb']:>7.0f}MB {peer['peak_rss_mb']:>10.0f}MB")
        else:
            print(f"{size:>5}² {ours['s_per_image']:>8.3f} {ours['s_per_image_with_masks']:>11.3f} {'-':>9} {'-':>14} "
                  f"{'-':>9} {'-':>9} {ours['peak_rss_mb']:>7.0f}MB {'-':>12}")
    print(f"structures per image: ours {rows[0][1]['num_structures']}"
          + (f", diffdrr {rows[0][2]['num_structures']}" if rows[0][2] else ""))
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "renderer.json").write_text(json.dumps([{"size": s, "ours": o, "diffdrr": p} for s, o, p in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
