"""Segmentation latency on the CPU: our fluorosam_cpu_small (bundled weights) against LiteMedSAM,
measured in the same run on the same rendered frames.

For each model: a NEW frame (image encoder + one prompt) and a prompt on a CACHED embedding
(prompt encoder + mask decoder + resizing the masks to the frame). Goals (issue 4): <= 1 s per
new frame, <= 50 ms per prompt with a cached embedding.

    scripts/run.sh python bench/bench_segmentation.py [--size 512] [--frames 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["lungs", "heart", "spine", "left clavicle", "ribs", "liver"]


def rendered_frames(size: int, count: int) -> list[np.ndarray]:
    """Display frames of the default patient from the data engine's standard views."""
    from fluorosam_ros.data.anatomy import PatientAnatomy
    from fluorosam_ros.data.views import ViewSampler, ViewSamplerConfig
    from fluorosam_ros.geometry.carm import CArmState
    from fluorosam_ros.twin.detector import DetectorModel
    from fluorosam_ros.twin.patient import Patient
    from fluorosam_ros.twin.renderer import CpuRenderer

    patient = Patient.default()
    renderer, detector = CpuRenderer(patient), DetectorModel()
    sampler = ViewSampler(PatientAnatomy(patient), ViewSamplerConfig(image_size_px=size))
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        view = sampler.random(rng)
        result = renderer.render(CArmState(view.config, view.pose), structures=None)
        frames.append(detector.display(detector.intensity(result.line_integral, result.exposed), result.exposed))
    return frames


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1e3)


def time_model(name: str, frames: list[np.ndarray], set_image, prompt_once) -> dict:
    set_image(frames[0])  # warm-up: allocations, lazy init
    prompt_once(0)
    new_frame, cached = [], []
    for index, frame in enumerate(frames):
        started = time.perf_counter()
        set_image(frame)
        prompt_once(index)
        new_frame.append(time.perf_counter() - started)
        for repeat in range(len(PROMPTS)):
            started = time.perf_counter()
            prompt_once(index + repeat + 1)
            cached.append(time.perf_counter() - started)
    return {"model": name, "new_frame_ms_p50": percentile_ms(new_frame, 50), "new_frame_ms_p90": percentile_ms(new_frame, 90),
            "cached_prompt_ms_p50": percentile_ms(cached, 50), "cached_prompt_ms_p90": percentile_ms(cached, 90),
            "frames": len(frames), "prompts": len(cached)}


def main() -> int:
    import torch

    from fluorosam_ros.evaluation.litemedsam import load_litemedsam
    from fluorosam_ros.model.build import build_model, bundled_checkpoint
    from fluorosam_ros.model.predictor import FluoroSAMPredictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="frame size (carm_sim publishes 384^2 by default)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = rendered_frames(args.size, args.frames)

    ours = FluoroSAMPredictor(build_model("fluorosam_cpu_small", args.checkpoint or bundled_checkpoint()))
    ours_result = time_model("fluorosam_cpu_small (text prompt)", frames, ours.set_image,
                             lambda i: ours.predict(text=PROMPTS[i % len(PROMPTS)]))

    peer = load_litemedsam()
    size = args.size
    boxes = [np.array([0.2, 0.25, 0.6, 0.7]) * size + offset for offset in range(len(PROMPTS))]
    peer_result = time_model("LiteMedSAM (box prompt)", frames, peer.set_image,
                             lambda i: peer.predict_box(boxes[i % len(boxes)]))

    print(f"\nsegmentation latency on the CPU ({args.threads} threads), {size}x{size} frames, "
          f"{args.frames} frames x {len(PROMPTS)} prompts")
    print(f"{'model':<36} {'new frame p50':>14} {'p90':>8} {'cached prompt p50':>18} {'p90':>8}")
    for row in (ours_result, peer_result):
        print(f"{row['model']:<36} {row['new_frame_ms_p50']:>11.0f} ms {row['new_frame_ms_p90']:>5.0f} ms "
              f"{row['cached_prompt_ms_p50']:>15.1f} ms {row['cached_prompt_ms_p90']:>5.1f} ms")
    new_ratio = peer_result["new_frame_ms_p50"] / ours_result["new_frame_ms_p50"]
    prompt_ratio = peer_result["cached_prompt_ms_p50"] / ours_result["cached_prompt_ms_p50"]
    print(f"ours vs LiteMedSAM: new frame {new_ratio:.2f}x faster, cached prompt {prompt_ratio:.2f}x faster "
          f"(> 1 means ours is faster)")
    print(f"goals: new frame <= 1000 ms: {'met' if ours_result['new_frame_ms_p50'] <= 1000 else 'NOT met'}; "
          f"cached prompt <= 50 ms: {'met' if ours_result['cached_prompt_ms_p50'] <= 50 else 'NOT met'}")
    out = REPO_ROOT / "bench" / "results" / "segmentation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": size, "threads": args.threads, "results": [ours_result, peer_result],
                               "ratios": {"new_frame": new_ratio, "cached_prompt": prompt_ratio}}, indent=1))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
