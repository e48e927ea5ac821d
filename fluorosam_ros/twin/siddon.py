"""Single-pass Siddon ray casting (numba): per-material mass path and per-structure path length.

One ray per exposed detector pixel, from the source to the pixel centre, traversed voxel by
voxel (Siddon 1985, with Jacobs et al. 1998's incremental update). Every voxel crossed adds
its exact intersection length to
  * `mass_path[material, row, col]` as density x length (g/cm^3 x mm), and
  * `label_path[channel, row, col]` as length (mm) when its label is tracked.
All geometry arrives in voxel-index coordinates (voxel centres at integers), so any affine
(anisotropic, flipped, oblique) works; lengths are converted to mm with each ray's world length.
"""

from __future__ import annotations

import math

import numba
import numpy as np

INFINITY = 1e30


@numba.njit(cache=True, fastmath=True, nogil=True)
def _trace_ray(source, direction, length_mm, shape, density, material, labels, label_channel,
               mass_path, label_path, row, col, track_labels):
    t_min, t_max = 0.0, 1.0
    for axis in range(3):
        d = direction[axis]
        lo, hi = -0.5, shape[axis] - 0.5
        if abs(d) < 1e-12:
            if source[axis] < lo or source[axis] > hi:
                return
            continue
        t0 = (lo - source[axis]) / d
        t1 = (hi - source[axis]) / d
        if t0 > t1:
            t0, t1 = t1, t0
        t_min = max(t_min, t0)
        t_max = min(t_max, t1)
    if t_min >= t_max:
        return

    index = np.empty(3, dtype=np.int64)
    step = np.empty(3, dtype=np.int64)
    t_next = np.empty(3, dtype=np.float64)
    t_delta = np.empty(3, dtype=np.float64)
    t_mid = 0.5 * (t_min + min(t_max, t_min + 1e-6))
    for axis in range(3):
        d = direction[axis]
        position = source[axis] + t_mid * d
        i = int(math.floor(position + 0.5))
        i = min(max(i, 0), shape[axis] - 1)
        index[axis] = i
        if d > 1e-12:
            step[axis] = 1
            t_next[axis] = (i + 0.5 - source[axis]) / d
            t_delta[axis] = 1.0 / d
        elif d < -1e-12:
            step[axis] = -1
            t_next[axis] = (i - 0.5 - source[axis]) / d
            t_delta[axis] = -1.0 / d
        else:
            step[axis] = 0
            t_next[axis] = INFINITY
            t_delta[axis] = INFINITY

    t = t_min
    while t < t_max:
        axis = 0
        if t_next[1] < t_next[axis]:
            axis = 1
        if t_next[2] < t_next[axis]:
            axis = 2
        t_end = min(t_next[axis], t_max)
        segment_mm = (t_end - t) * length_mm
        if segment_mm > 0.0:
            i, j, k = index[0], index[1], index[2]
            mass_path[material[i, j, k], row, col] += density[i, j, k] * segment_mm
            if track_labels:
                channel = label_channel[labels[i, j, k]]
                if channel >= 0:
                    label_path[channel, row, col] += segment_mm
        t = t_end
        index[axis] += step[axis]
        if index[axis] < 0 or index[axis] >= shape[axis]:
            break
        t_next[axis] += t_delta[axis]


@numba.njit(parallel=True, cache=True, fastmath=True)
def trace_detector(source_vox, pixel00_vox, col_step_vox, row_step_vox,
                   source_world, pixel00_world, col_step_world, row_step_world,
                   exposed, density, material, labels, label_channel,
                   mass_path, label_path, track_labels):
    """Trace every exposed pixel of an (H, W) detector; accumulate into the output arrays."""
    height, width = exposed.shape
    shape = np.array(density.shape, dtype=np.int64)
    for row in numba.prange(height):
        direction = np.empty(3, dtype=np.float64)
        for col in range(width):
            if not exposed[row, col]:
                continue
            length_sq = 0.0
            for axis in range(3):
                pixel_world = (pixel00_world[axis] + col * col_step_world[axis]
                               + row * row_step_world[axis])
                length_sq += (pixel_world - source_world[axis]) ** 2
                direction[axis] = (pixel00_vox[axis] + col * col_step_vox[axis]
                                   + row * row_step_vox[axis]) - source_vox[axis]
            _trace_ray(source_vox, direction, math.sqrt(length_sq), shape, density, material,
                       labels, label_channel, mass_path, label_path, row, col, track_labels)
