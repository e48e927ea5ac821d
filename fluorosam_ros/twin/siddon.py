"""Single-pass Siddon ray casting (numba): per-material mass path and per-structure path length.

One ray per exposed detector pixel, from the source to the pixel centre, traversed voxel by
voxel (Siddon 1985, with Jacobs et al. 1998's incremental update). Every voxel crossed adds
its exact intersection length to
  * `mass_path[material, row, col]` as density x length (g/cm^3 x mm), and
  * `label_path[channel, row, col]` as length (mm) when its label is tracked.
All geometry arrives in voxel-index coordinates (voxel centres at integers), so any affine
(anisotropic, flipped, oblique) works; lengths are converted to mm with each ray's world length.

The volume is stored as integer HU (2 bytes a voxel) with lookup tables for material and
density, and the caller passes a copy whose last (contiguous) axis is the one the rays run
along most, so consecutive steps of a ray stay in one cache line: ray casting through a CT is
bound by memory traffic, not arithmetic. Runs of voxels with the same label are summed
locally and written once, which keeps the inner loop free of scattered stores.
"""

from __future__ import annotations

import math

import numba
import numpy as np

INFINITY = 1e30
HU_OFFSET = 32768  # uint16 code = HU + HU_OFFSET covers every int16 HU


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _axis_setup(source, direction, size, t_mid):
    """Start index, step, first boundary crossing and crossing interval along one axis."""
    index = int(math.floor(source + t_mid * direction + 0.5))
    index = min(max(index, 0), size - 1)
    if direction > 1e-12:
        return index, 1, (index + 0.5 - source) / direction, 1.0 / direction
    if direction < -1e-12:
        return index, -1, (index - 0.5 - source) / direction, -1.0 / direction
    return index, 0, INFINITY, INFINITY


@numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
def _entry_exit(source, direction, size, t_min, t_max):
    if abs(direction) < 1e-12:
        if source < -0.5 or source > size - 0.5:
            return 1.0, 0.0
        return t_min, t_max
    t0 = (-0.5 - source) / direction
    t1 = (size - 0.5 - source) / direction
    if t0 > t1:
        t0, t1 = t1, t0
    return max(t_min, t0), min(t_max, t1)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _trace_ray(sx, sy, sz, dx, dy, dz, length_mm, nx, ny, nz, hu_index, density_lut, material_lut,
               labels, label_channel, mass_path, label_path, row, col, track_labels, mass_sums):
    t_min, t_max = _entry_exit(sx, dx, nx, 0.0, 1.0)
    t_min, t_max = _entry_exit(sy, dy, ny, t_min, t_max)
    t_min, t_max = _entry_exit(sz, dz, nz, t_min, t_max)
    if t_min >= t_max:
        return
    t_mid = 0.5 * (t_min + min(t_max, t_min + 1e-6))
    ix, step_x, tx, delta_x = _axis_setup(sx, dx, nx, t_mid)
    iy, step_y, ty, delta_y = _axis_setup(sy, dy, ny, t_mid)
    iz, step_z, tz, delta_z = _axis_setup(sz, dz, nz, t_mid)

    mass_sums[:] = 0.0
    run_channel = -1
    run_length = 0.0
    t = t_min
    while t < t_max:
        if tx <= ty and tx <= tz:
            t_end, axis = tx, 0
        elif ty <= tz:
            t_end, axis = ty, 1
        else:
            t_end, axis = tz, 2
        if t_end > t_max:
            t_end = t_max
        segment = (t_end - t) * length_mm
        code = hu_index[ix, iy, iz]
        mass_sums[material_lut[code]] += density_lut[code] * segment
        if track_labels:
            channel = label_channel[labels[ix, iy, iz]]
            if channel != run_channel:
                if run_channel >= 0:
                    label_path[run_channel, row, col] += run_length
                run_channel = channel
                run_length = 0.0
            run_length += segment
        t = t_end
        if axis == 0:
            ix += step_x
            tx += delta_x
            if ix < 0 or ix >= nx:
                break
        elif axis == 1:
            iy += step_y
            ty += delta_y
            if iy < 0 or iy >= ny:
                break
        else:
            iz += step_z
            tz += delta_z
            if iz < 0 or iz >= nz:
                break
    if run_channel >= 0:
        label_path[run_channel, row, col] += run_length
    for m in range(mass_sums.shape[0]):
        mass_path[m, row, col] = mass_sums[m]


@numba.njit(parallel=True, cache=True, fastmath=True)
def trace_detector(source_vox, pixel00_vox, col_step_vox, row_step_vox,
                   source_world, pixel00_world, col_step_world, row_step_world,
                   exposed, hu_index, density_lut, material_lut, labels, label_channel,
                   mass_path, label_path, track_labels):
    """Trace every exposed pixel of an (H, W) detector; accumulate into the output arrays.

    `hu_index` holds HU + HU_OFFSET as uint16; `density_lut` and `material_lut` map it to g/cm^3
    and a material index."""
    height, width = exposed.shape
    nx, ny, nz = hu_index.shape
    n_materials = mass_path.shape[0]
    for row in numba.prange(height):
        mass_sums = np.zeros(n_materials, dtype=np.float64)
        for col in range(width):
            if not exposed[row, col]:
                continue
            length_sq = 0.0
            for axis in range(3):
                pixel_world = (pixel00_world[axis] + col * col_step_world[axis]
                               + row * row_step_world[axis])
                length_sq += (pixel_world - source_world[axis]) ** 2
            dx = pixel00_vox[0] + col * col_step_vox[0] + row * row_step_vox[0] - source_vox[0]
            dy = pixel00_vox[1] + col * col_step_vox[1] + row * row_step_vox[1] - source_vox[1]
            dz = pixel00_vox[2] + col * col_step_vox[2] + row * row_step_vox[2] - source_vox[2]
            _trace_ray(source_vox[0], source_vox[1], source_vox[2], dx, dy, dz, math.sqrt(length_sq),
                       nx, ny, nz, hu_index, density_lut, material_lut, labels, label_channel,
                       mass_path, label_path,
                       row, col, track_labels, mass_sums)
