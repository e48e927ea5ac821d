"""Procedural surgical tools for the synthetic-data engine: geometry, placement, projection, text.

Each tool is built in its own frame (mm) from analytic primitives: capped cylinders, frusta,
boxes, spheres, stadium slabs (rounded bars and slots) and half-spaces. A *part* is the
intersection of a few convex primitives, and a tool is a signed sum of parts:

    length(tool) = sum_parts sign * length(ray ∩ part)

Because every part is convex, a ray meets it in one interval (the intersection of the
primitives' intervals), so each term is exact. Holes are negative parts clipped to what they
cut (hole ∩ plate), cannulations are negative cylinders, and where two negatives overlap the
overlap is added back (inclusion-exclusion), e.g. a locking hole crossing a nail's cannulation.
Positive parts of one tool never overlap by construction (bent strips are mitred with
half-spaces on the bisector planes, threads are stacked frusta).

Approximations (all visible in the builders): screw threads are axisymmetric V rings rather
than a helix; twist-drill flutes are a slab rotated in short steps along the lead; plates are
flat. Metal attenuation comes from xraylib through `ALLOYS` (mixture rule), monoenergetic at
the renderer's effective energy, so beam hardening by metal is not modelled.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable, Iterator, Sequence

import numba
import numpy as np

from ..geometry.camera import CameraProjection
from ..geometry.transforms import invert_rigid, rotation_about_axis
from ..twin.materials import ALLOYS, alloy_linear_attenuation_per_mm
from ..twin.renderer import RenderResult

log = logging.getLogger(__name__)

# Tool-specific vocabulary: "family" and "family:kind" keys. The canonical description is
# always the first prompt; these are the names clinicians and reports use for the same thing.
TOOL_PHRASES: dict[str, tuple[str, ...]] = {
    "screw": ("the screw", "screw", "bone screw", "orthopaedic screw", "implant screw"),
    "screw:cortical": ("cortical screw", "cortex screw"),
    "screw:cancellous": ("cancellous screw", "lag screw", "partially threaded screw"),
    "screw:cannulated": ("cannulated screw", "hollow screw"),
    "screw:locking": ("locking screw", "locking head screw"),
    "screw:pedicle": ("pedicle screw", "polyaxial screw", "spinal screw"),
    "k_wire": ("K-wire", "Kirschner wire", "the wire", "pin", "wire"),
    "k_wire:guide": ("guide wire", "guide pin", "guidewire"),
    "plate": ("the plate", "bone plate", "fixation plate", "plate"),
    "plate:locking": ("locking plate", "LCP", "locking compression plate"),
    "plate:compression": ("compression plate", "DCP", "dynamic compression plate"),
    "plate:tubular": ("one-third tubular plate", "tubular plate"),
    "scalpel": ("scalpel", "the scalpel", "scalpel blade", "surgical knife", "blade", "knife"),
    "retractor": ("retractor", "the retractor", "surgical retractor"),
    "retractor:hohmann": ("Hohmann retractor", "bone lever"),
    "retractor:langenbeck": ("Langenbeck retractor", "hand-held retractor"),
    "retractor:army_navy": ("army-navy retractor", "double-ended retractor"),
    "drill_bit": ("drill bit", "the drill", "drill", "twist drill"),
    "intramedullary_nail": ("intramedullary nail", "IM nail", "the nail", "nail", "rod"),
    "intramedullary_nail:tibial": ("tibial nail",),
    "intramedullary_nail:femoral": ("femoral nail",),
    "intramedullary_nail:humeral": ("humeral nail",),
}

# Primitive kinds, as the numba kernel sees them. Each is centred on its own local origin.
CYLINDER = 0   # params (radius, half_length, -): axis z
BOX = 1        # params (half_x, half_y, half_z)
SPHERE = 2     # params (radius, -, -)
FRUSTUM = 3    # params (radius at z=-h, radius at z=+h, h)
STADIUM = 4    # params (half_length of the core segment along x, radius, half_thickness z)
HALFSPACE = 5  # the region z <= 0

_BIG = 1e30


# ---- primitives and models ------------------------------------------------------------------
@dataclass(frozen=True)
class Primitive:
    kind: int
    params: tuple[float, float, float]
    tool_from_local: np.ndarray = field(default_factory=lambda: np.eye(4))

    def half_extent(self) -> np.ndarray:
        """Half-size of the primitive's local bounding box (inf for a half-space)."""
        a, b, c = self.params
        if self.kind == CYLINDER:
            return np.array([a, a, b])
        if self.kind == BOX:
            return np.array([a, b, c])
        if self.kind == SPHERE:
            return np.array([a, a, a])
        if self.kind == FRUSTUM:
            r = max(a, b)
            return np.array([r, r, c])
        if self.kind == STADIUM:
            return np.array([a + b, b, c])
        return np.full(3, np.inf)

    def bound_radius(self) -> float:
        """Radius of a sphere about the local origin holding the primitive (for ray culling)."""
        if self.kind == SPHERE:
            return self.params[0]
        extent = self.half_extent()
        return float(np.linalg.norm(extent)) if np.all(np.isfinite(extent)) else _BIG


@dataclass(frozen=True)
class Part:
    """The intersection of convex primitives, counted with `sign` (+1 solid, -1 removed)."""

    primitives: tuple[Primitive, ...]
    sign: int = 1


@dataclass(frozen=True)
class ToolModel:
    parts: tuple[Part, ...]

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (tool frame) holding every positive part."""
        corners = []
        for part in self.parts:
            if part.sign < 0:
                continue
            bounded = [p for p in part.primitives if p.kind != HALFSPACE]
            if not bounded:
                raise ValueError("a positive part needs at least one bounded primitive")
            prim = bounded[0]
            signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
            local = signs * prim.half_extent()
            corners.append(local @ prim.tool_from_local[:3, :3].T + prim.tool_from_local[:3, 3])
        points = np.concatenate(corners)
        return points.min(axis=0), points.max(axis=0)

    @property
    def centre(self) -> np.ndarray:
        lo, hi = self.bounds
        return (lo + hi) / 2

    @property
    def n_primitives(self) -> int:
        return sum(len(p.primitives) for p in self.parts)

    @cached_property
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Per primitive: local_from_tool (P, 4, 4) and [kind, sign, last, params(3), bound]."""
        transforms, static = [], []
        for part in self.parts:
            for index, prim in enumerate(part.primitives):
                transforms.append(invert_rigid(prim.tool_from_local))
                last = 1.0 if index == len(part.primitives) - 1 else 0.0
                static.append([prim.kind, part.sign, last, *prim.params, prim.bound_radius()])
        return np.array(transforms), np.array(static, dtype=np.float64)


def _frame(origin: Sequence[float] = (0, 0, 0), rotation: np.ndarray | None = None) -> np.ndarray:
    frame = np.eye(4)
    if rotation is not None:
        frame[:3, :3] = rotation
    frame[:3, 3] = origin
    return frame


def _rotation_z_to(axis: Sequence[float]) -> np.ndarray:
    """A rotation whose third column is `axis` (the others are any orthonormal completion)."""
    z = np.asarray(axis, dtype=float)
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


def cylinder(radius: float, z0: float, z1: float, origin: Sequence[float] = (0, 0, 0),
             axis: Sequence[float] = (0, 0, 1)) -> Primitive:
    """Capped cylinder along `axis` through `origin`, from z0 to z1 (axial coordinates)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    centre = np.asarray(origin, dtype=float) + axis * (z0 + z1) / 2
    return Primitive(CYLINDER, (radius, (z1 - z0) / 2, 0.0), _frame(centre, _rotation_z_to(axis)))


def frustum(r0: float, r1: float, z0: float, z1: float, origin: Sequence[float] = (0, 0, 0),
            axis: Sequence[float] = (0, 0, 1)) -> Primitive:
    """Truncated cone: radius r0 at axial z0, r1 at z1 (either may be 0 for a point)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    centre = np.asarray(origin, dtype=float) + axis * (z0 + z1) / 2
    return Primitive(FRUSTUM, (r0, r1, (z1 - z0) / 2), _frame(centre, _rotation_z_to(axis)))


def box(half: Sequence[float], centre: Sequence[float] = (0, 0, 0),
        rotation: np.ndarray | None = None) -> Primitive:
    return Primitive(BOX, tuple(float(h) for h in half), _frame(centre, rotation))


def sphere(radius: float, centre: Sequence[float] = (0, 0, 0)) -> Primitive:
    return Primitive(SPHERE, (radius, 0.0, 0.0), _frame(centre))


def stadium(half_length: float, radius: float, half_thickness: float,
            centre: Sequence[float] = (0, 0, 0), rotation: np.ndarray | None = None) -> Primitive:
    """A rounded bar or slot: points within `radius` of a segment along local x, slab in z."""
    return Primitive(STADIUM, (half_length, radius, half_thickness), _frame(centre, rotation))


def halfspace(point: Sequence[float], outward_normal: Sequence[float]) -> Primitive:
    """The points x with (x - point) . normal <= 0."""
    return Primitive(HALFSPACE, (0.0, 0.0, 0.0), _frame(point, _rotation_z_to(outward_normal)))


def solid(*primitives: Primitive) -> Part:
    return Part(tuple(primitives), 1)


def hole(*primitives: Primitive) -> Part:
    return Part(tuple(primitives), -1)


# ---- ray / primitive intersection (numba) ---------------------------------------------------
@numba.njit(cache=True, nogil=True, inline="always")
def _slab(o, d, half):
    if abs(d) < 1e-15:
        return (-_BIG, _BIG) if abs(o) <= half else (1.0, 0.0)
    a = (-half - o) / d
    b = (half - o) / d
    return (a, b) if a < b else (b, a)


@numba.njit(cache=True, nogil=True, inline="always")
def _disc_interval(ox, oy, dx, dy, radius):
    """Where the infinite cylinder x^2 + y^2 <= r^2 holds along the line."""
    a = dx * dx + dy * dy
    c = ox * ox + oy * oy - radius * radius
    if a < 1e-20:
        return (-_BIG, _BIG) if c <= 0 else (1.0, 0.0)
    b = ox * dx + oy * dy
    disc = b * b - a * c
    if disc < 0:
        return 1.0, 0.0
    root = math.sqrt(disc)
    return (-b - root) / a, (-b + root) / a


@numba.njit(cache=True, nogil=True, inline="always")
def _cylinder(ox, oy, oz, dx, dy, dz, radius, half):
    a0, a1 = _disc_interval(ox, oy, dx, dy, radius)
    b0, b1 = _slab(oz, dz, half)
    return max(a0, b0), min(a1, b1)


@numba.njit(cache=True, nogil=True, inline="always")
def _box(ox, oy, oz, dx, dy, dz, hx, hy, hz):
    a0, a1 = _slab(ox, dx, hx)
    b0, b1 = _slab(oy, dy, hy)
    c0, c1 = _slab(oz, dz, hz)
    return max(a0, b0, c0), min(a1, b1, c1)


@numba.njit(cache=True, nogil=True, inline="always")
def _sphere(ox, oy, oz, dx, dy, dz, radius):
    a = dx * dx + dy * dy + dz * dz
    b = ox * dx + oy * dy + oz * dz
    c = ox * ox + oy * oy + oz * oz - radius * radius
    disc = b * b - a * c
    if disc < 0:
        return 1.0, 0.0
    root = math.sqrt(disc)
    return (-b - root) / a, (-b + root) / a


@numba.njit(cache=True, nogil=True)
def _frustum(ox, oy, oz, dx, dy, dz, r0, r1, half):
    """Inside the slab the radius r(z) >= 0, so the cone quadric x^2 + y^2 - r(z)^2 <= 0
    describes exactly the frustum; its sign pattern along the line depends on the sign of A."""
    s0, s1 = _slab(oz, dz, half)
    if s0 >= s1:
        return 1.0, 0.0
    k = (r1 - r0) / (2 * half)
    w0 = (r0 + r1) / 2 + k * oz
    wd = k * dz
    qa = dx * dx + dy * dy - wd * wd
    qb = ox * dx + oy * dy - w0 * wd  # half of the linear coefficient
    qc = ox * ox + oy * oy - w0 * w0
    scale = dx * dx + dy * dy + dz * dz
    if abs(qa) < 1e-12 * scale:
        if abs(qb) < 1e-15 * scale:
            return (s0, s1) if qc <= 0 else (1.0, 0.0)
        root = -qc / (2 * qb)
        return (s0, min(s1, root)) if qb > 0 else (max(s0, root), s1)
    disc = qb * qb - qa * qc
    if disc < 0:
        return (s0, s1) if qa < 0 else (1.0, 0.0)
    root = math.sqrt(disc)
    ta = (-qb - root) / qa
    tb = (-qb + root) / qa
    if ta > tb:
        ta, tb = tb, ta
    if qa > 0:
        return max(s0, ta), min(s1, tb)
    # inside outside (ta, tb): the frustum is convex, so only one of the two pieces is hit
    if ta > s0:
        return s0, min(ta, s1)
    return max(tb, s0), s1


@numba.njit(cache=True, nogil=True)
def _stadium(ox, oy, oz, dx, dy, dz, half_length, radius, half):
    """Box and two end cylinders; their union is convex, so its interval spans all pieces."""
    lo, hi = _BIG, -_BIG
    for piece in range(3):
        if piece == 0:
            t0, t1 = _box(ox, oy, oz, dx, dy, dz, half_length, radius, half)
        else:
            shift = half_length if piece == 1 else -half_length
            t0, t1 = _cylinder(ox - shift, oy, oz, dx, dy, dz, radius, half)
        if t1 > t0:
            lo = min(lo, t0)
            hi = max(hi, t1)
    return lo, hi


@numba.njit(cache=True, nogil=True, inline="always")
def _halfspace(oz, dz):
    if abs(dz) < 1e-15:
        return (-_BIG, _BIG) if oz <= 0 else (1.0, 0.0)
    root = -oz / dz
    return (-_BIG, root) if dz > 0 else (root, _BIG)


@numba.njit(cache=True, nogil=True)
def _interval(kind, ox, oy, oz, dx, dy, dz, a, b, c, bound):
    if kind != HALFSPACE:
        # cheap reject: the segment's closest approach to the primitive's centre
        dd = dx * dx + dy * dy + dz * dz
        t = min(max(-(ox * dx + oy * dy + oz * dz) / dd, 0.0), 1.0)
        px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
        if px * px + py * py + pz * pz > bound * bound:
            return 1.0, 0.0
    if kind == CYLINDER:
        return _cylinder(ox, oy, oz, dx, dy, dz, a, b)
    if kind == BOX:
        return _box(ox, oy, oz, dx, dy, dz, a, b, c)
    if kind == SPHERE:
        return _sphere(ox, oy, oz, dx, dy, dz, a)
    if kind == FRUSTUM:
        return _frustum(ox, oy, oz, dx, dy, dz, a, b, c)
    if kind == STADIUM:
        return _stadium(ox, oy, oz, dx, dy, dz, a, b, c)
    return _halfspace(oz, dz)


@numba.njit(cache=True, nogil=True, inline="always")
def _to_local(m, x, y, z, w):
    """Row m: [.., R(9) at 3..11, t at 12..14]; w = 1 for points, 0 for directions."""
    return (m[3] * x + m[4] * y + m[5] * z + w * m[12],
            m[6] * x + m[7] * y + m[8] * z + w * m[13],
            m[9] * x + m[10] * y + m[11] * z + w * m[14])


@numba.njit(cache=True, nogil=True)
def _tool_length(tools, prims, tool, ox, oy, oz, dx, dy, dz):
    """Parametric length (in units of the segment) of one tool along one segment."""
    row = tools[tool]
    lx, ly, lz = _to_local(row, ox, oy, oz, 1.0)
    ex, ey, ez = _to_local(row, dx, dy, dz, 0.0)
    b0, b1 = _box(lx - row[15], ly - row[16], lz - row[17], ex, ey, ez, row[18], row[19], row[20])
    if min(b1, 1.0) <= max(b0, 0.0):
        return 0.0
    total = 0.0
    lo, hi = 0.0, 1.0
    for p in range(int(row[0]), int(row[0]) + int(row[1])):
        m = prims[p]
        if hi > lo:  # once a part is empty, skip the rest of its primitives
            px, py, pz = _to_local(m, ox, oy, oz, 1.0)
            qx, qy, qz = _to_local(m, dx, dy, dz, 0.0)
            t0, t1 = _interval(int(m[0]), px, py, pz, qx, qy, qz, m[15], m[16], m[17], m[18])
            lo, hi = max(lo, t0), min(hi, t1)
        if m[2] > 0:  # last primitive of its part
            if hi > lo:
                total += m[1] * (hi - lo)
            lo, hi = 0.0, 1.0
    return max(total, 0.0)


@numba.njit(cache=True, nogil=True)
def _trace_segment(tools, prims, out, i, ox, oy, oz, dx, dy, dz):
    length = math.sqrt(dx * dx + dy * dy + dz * dz)
    for tool in range(tools.shape[0]):
        out[tool, i] = _tool_length(tools, prims, tool, ox, oy, oz, dx, dy, dz) * length


@numba.njit(parallel=True, cache=True, nogil=True)
def _trace_segments(origins, ends, tools, prims, out):
    for i in numba.prange(origins.shape[0]):
        ox, oy, oz = origins[i, 0], origins[i, 1], origins[i, 2]
        _trace_segment(tools, prims, out, i, ox, oy, oz,
                       ends[i, 0] - ox, ends[i, 1] - oy, ends[i, 2] - oz)


@numba.njit(parallel=True, cache=True, nogil=True)
def _trace_pixels(source, pixel00, col_step, row_step, pixels, width, tools, prims, out):
    """Rays from the source to the centres of the flat-indexed `pixels`; out is (T, H*W)."""
    for i in numba.prange(pixels.shape[0]):
        pixel = pixels[i]
        r, c = float(pixel // width), float(pixel % width)
        dx = pixel00[0] + c * col_step[0] + r * row_step[0] - source[0]
        dy = pixel00[1] + c * col_step[1] + r * row_step[1] - source[1]
        dz = pixel00[2] + c * col_step[2] + r * row_step[2] - source[2]
        _trace_segment(tools, prims, out, pixel, source[0], source[1], source[2], dx, dy, dz)


def _pack(models: Sequence[ToolModel],
          world_from_tools: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten tools into the kernel's tables (all transforms taken to local_from_world)."""
    tool_rows, prim_blocks, first = [], [], 0
    for model, world_from_tool in zip(models, world_from_tools):
        tool_from_world = invert_rigid(np.asarray(world_from_tool, dtype=float))
        lo, hi = model.bounds
        # same column layout as primitive rows for the transform (columns 3..14)
        tool_rows.append([first, model.n_primitives, 0.0, *tool_from_world[:3, :3].ravel(),
                          *tool_from_world[:3, 3], *((lo + hi) / 2), *((hi - lo) / 2 + 1e-6)])
        local_from_tool, static = model.tables
        local_from_world = local_from_tool @ tool_from_world
        prim_blocks.append(np.concatenate(
            [static[:, :3], local_from_world[:, :3, :3].reshape(-1, 9), local_from_world[:, :3, 3],
             static[:, 3:]], axis=1))
        first += model.n_primitives
    prims = np.concatenate(prim_blocks) if prim_blocks else np.zeros((0, 19))
    return np.array(tool_rows, dtype=np.float64).reshape(-1, 21), np.ascontiguousarray(prims)


def model_path_lengths(models: Sequence[ToolModel], world_from_tools: Sequence[np.ndarray],
                       origins: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(T, N) length in mm of each model along each segment origins[i] -> ends[i] (world mm)."""
    origins = np.ascontiguousarray(np.broadcast_to(origins, np.shape(ends)), dtype=np.float64)
    ends = np.ascontiguousarray(ends, dtype=np.float64)
    out = np.zeros((len(models), len(ends)), dtype=np.float64)
    if len(models) and len(ends):
        tools, prims = _pack(models, world_from_tools)
        _trace_segments(origins, ends, tools, prims, out)
    return out


# ---- catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolVariant:
    family: str
    name: str
    description: str
    material: str                     # key into twin.materials.ALLOYS
    build: Callable[[], ToolModel] = field(repr=False, compare=False)
    kind: str = ""                    # sub-type used for phrasing ("cannulated", "hohmann", ...)
    flat: bool = False                # lies roughly across the beam (plates, blades, retractors)

    @cached_property
    def model(self) -> ToolModel:
        return self.build()


def tool_prompts(variant: ToolVariant) -> list[str]:
    """The canonical description first, then the family's and the sub-type's usual names."""
    phrases = [variant.description, *TOOL_PHRASES.get(variant.family, ()),
               *TOOL_PHRASES.get(f"{variant.family}:{variant.kind}", ())]
    return list(dict.fromkeys(phrases))


def _mm(value: float) -> str:
    return f"{value:g}"


# screws: axis +z, underside of the head at z = 0, tip at z = -length
@dataclass(frozen=True)
class ScrewSpec:
    kind: str
    thread_d: float
    core_d: float
    pitch: float
    head_d: float
    head_h: float
    material: str
    lengths: tuple[float, ...]
    thread_len: float | None = None   # None: fully threaded
    shank_d: float | None = None      # unthreaded shank of partially threaded screws
    cannulation_d: float = 0.0


SCREWS = (  # nominal AO-style dimensions
    ScrewSpec("cortical", 2.7, 1.9, 1.0, 5.0, 2.0, "steel_316l", (16, 30)),
    ScrewSpec("cortical", 3.5, 2.4, 1.25, 6.0, 2.6, "steel_316l", (20, 40, 60)),
    ScrewSpec("cortical", 4.5, 3.0, 1.75, 8.0, 4.0, "steel_316l", (36, 70)),
    ScrewSpec("cancellous", 4.0, 1.9, 1.75, 6.0, 2.6, "steel_316l", (30, 50), 14, 2.3),
    ScrewSpec("cancellous", 6.5, 3.0, 2.75, 8.0, 4.5, "steel_316l", (60, 90), 32, 4.5),
    ScrewSpec("cannulated", 4.0, 2.6, 1.25, 6.0, 2.6, "ti6al4v", (40,), 15, 2.6, 1.3),
    ScrewSpec("cannulated", 7.3, 4.5, 2.75, 8.0, 4.5, "ti6al4v", (80, 110), 32, 4.5, 2.9),
    ScrewSpec("locking", 3.5, 2.9, 1.25, 5.0, 3.0, "ti6al4v", (30, 50)),
    ScrewSpec("locking", 5.0, 4.3, 1.0, 7.2, 4.2, "ti6al4v", (40, 70)),
    ScrewSpec("pedicle", 6.5, 4.5, 2.8, 12.0, 18.0, "ti6al4v", (45,)),
    ScrewSpec("pedicle", 5.5, 3.9, 2.5, 12.0, 18.0, "ti6al4v", (40,)),
)


def _threads(core_r: float, major_r: float, pitch: float, z0: float, z1: float) -> list[Part]:
    """Stacked V rings (axisymmetric threads) filling z0..z1: core -> major -> core per pitch."""
    n = max(int((z1 - z0) // pitch), 1)
    step = (z1 - z0) / n
    parts = []
    for i in range(n):
        za, zm = z0 + i * step, z0 + (i + 0.5) * step
        parts.append(solid(frustum(core_r, major_r, za, zm)))
        parts.append(solid(frustum(major_r, core_r, zm, za + step)))
    return parts


def _screw_head(spec: ScrewSpec) -> list[Part]:
    r, h = spec.head_d / 2, spec.head_h
    if spec.kind == "pedicle":
        return _tulip_head(spec)
    if spec.kind == "locking":  # conical threaded head
        parts = [solid(frustum(spec.core_d / 2 + 0.3, r, 0, h))]
    else:  # tapered underside, cylindrical top
        parts = [solid(frustum(0.6 * r, r, 0, 0.5 * h)), solid(cylinder(r, 0.5 * h, h))]
    socket_r = 0.23 * spec.head_d
    return parts + [hole(cylinder(socket_r, 0.4 * h, h))]


def _tulip_head(spec: ScrewSpec) -> list[Part]:
    """Polyaxial ball under a U-shaped tulip: a ring and two arms either side of the rod slot."""
    ball_r, outer_r, inner_r, slot = 3.5, spec.head_d / 2, 3.6, 2.9
    parts = [solid(sphere(ball_r, (0, 0, 2.5)), halfspace((0, 0, 0), (0, 0, -1))),
             solid(cylinder(outer_r, 4, 8)), hole(cylinder(inner_r, 4, 8))]
    for side in (1, -1):
        cut = halfspace((0, side * slot, 0), (0, -side, 0))
        parts += [solid(cylinder(outer_r, 8, spec.head_h), cut),
                  hole(cylinder(inner_r, 8, spec.head_h), cut)]
    return parts


def _build_screw(spec: ScrewSpec, length: float) -> ToolModel:
    core_r, major_r = spec.core_d / 2, spec.thread_d / 2
    tip = min(2.0 * spec.pitch, 0.2 * length)
    thread_len = min(spec.thread_len or length, length - 2)
    parts = [solid(frustum(0.5 * core_r, core_r, -length, -length + tip))]  # blunt tip
    parts += _threads(core_r, major_r, spec.pitch, -length + tip, -length + thread_len)
    if thread_len < length:
        parts.append(solid(cylinder((spec.shank_d or spec.core_d) / 2, -length + thread_len, 0)))
    parts += _screw_head(spec)
    if spec.cannulation_d:
        parts.append(hole(cylinder(spec.cannulation_d / 2, -length, spec.head_h)))
    return ToolModel(tuple(parts))


def _screw_variants() -> list[ToolVariant]:
    variants = []
    for spec in SCREWS:
        for length in spec.lengths:
            d = _mm(spec.thread_d)
            description = f"{spec.kind} {d} mm screw, {length} mm"
            if spec.thread_len:
                description += f", {spec.thread_len} mm thread"
            variants.append(ToolVariant(
                "screw", f"screw_{spec.kind}_{d}x{length}", description, spec.material,
                lambda s=spec, L=length: _build_screw(s, L), spec.kind))
    return variants


# K-wires: axis +z from the trocar point at z = 0
def _build_k_wire(diameter: float, length: float) -> ToolModel:
    r, tip = diameter / 2, 1.5 * diameter
    return ToolModel((solid(frustum(0.0, r, 0, tip)), solid(cylinder(r, tip, length))))


def _k_wire_variants() -> list[ToolVariant]:
    specs = ((1.0, 100, ""), (1.25, 150, "guide"), (1.6, 150, ""), (2.0, 230, ""),
             (2.5, 230, ""), (2.8, 300, "guide"), (3.2, 300, "guide"))
    variants = []
    for d, length, kind in specs:
        label = "guide wire" if kind else "K-wire"
        variants.append(ToolVariant(
            "k_wire", f"k_wire_{_mm(d)}x{length}", f"{_mm(d)} mm {label}, {length} mm",
            "steel_316l", lambda d=d, L=length: _build_k_wire(d, L), kind))
    return variants


# plates: long axis x, thickness z, centred
@dataclass(frozen=True)
class PlateSpec:
    kind: str
    system: float          # screw size, mm
    width: float
    thickness: float
    spacing: float
    slot_r: float
    slot_half: float
    material: str
    holes: tuple[int, ...]


PLATES = (
    PlateSpec("locking", 3.5, 11.0, 3.3, 16.0, 2.5, 1.75, "steel_316l", (4, 6, 8, 12)),
    PlateSpec("compression", 3.5, 12.0, 4.0, 16.0, 2.0, 1.5, "steel_316l", (6,)),
    PlateSpec("locking", 4.5, 13.5, 5.0, 18.0, 3.0, 2.0, "ti6al4v", (8, 10)),
    PlateSpec("compression", 4.5, 12.0, 3.8, 16.0, 2.5, 2.0, "steel_316l", (6,)),
    PlateSpec("tubular", 3.5, 10.0, 1.0, 12.0, 2.0, 1.25, "steel_316l", (4, 6)),
)


def _build_flat_plate(spec: PlateSpec, n_holes: int) -> ToolModel:
    half_t = spec.thickness / 2
    half_len = (n_holes - 1) * spec.spacing / 2 + 0.5 * spec.spacing
    outline = stadium(half_len - spec.width / 2, spec.width / 2, half_t)
    parts = [solid(outline)]
    for i in range(n_holes):
        x = (i - (n_holes - 1) / 2) * spec.spacing
        parts.append(hole(stadium(spec.slot_half, spec.slot_r, half_t, (x, 0, 0)), outline))
    return ToolModel(tuple(parts))


def _build_tubular_plate(spec: PlateSpec, n_holes: int) -> ToolModel:
    """A third of a tube (axis x, opening towards -z); oval holes cut radially through the arc.
    Inclusion-exclusion with wedge W and hole H:
    |outer ∩ W| - |inner ∩ W| - |H ∩ outer ∩ W| + |H ∩ inner ∩ W|."""
    outer_r = spec.width / (2 * math.sin(math.pi / 3))
    inner_r = outer_r - spec.thickness
    half_len = (n_holes - 1) * spec.spacing / 2 + 0.5 * spec.spacing
    wedge = tuple(halfspace((0, 0, 0), (0, math.cos(a), -math.sin(a)))
                  for a in (math.pi / 6, 5 * math.pi / 6))
    outer = cylinder(outer_r, -half_len, half_len, axis=(1, 0, 0))
    inner = cylinder(inner_r, -half_len, half_len, axis=(1, 0, 0))
    parts = [solid(outer, *wedge), hole(inner, *wedge)]
    for i in range(n_holes):
        x = (i - (n_holes - 1) / 2) * spec.spacing
        slot = stadium(spec.slot_half, spec.slot_r, outer_r / 2, (x, 0, outer_r / 2))
        parts += [hole(slot, outer, *wedge), solid(slot, inner, *wedge)]
    return ToolModel(tuple(parts))


def _plate_variants() -> list[ToolVariant]:
    variants = []
    for spec in PLATES:
        build = _build_tubular_plate if spec.kind == "tubular" else _build_flat_plate
        for n in spec.holes:
            kind_text = "one-third tubular" if spec.kind == "tubular" else spec.kind
            variants.append(ToolVariant(
                "plate", f"plate_{spec.kind}_{_mm(spec.system)}_{n}h",
                f"{_mm(spec.system)} mm {kind_text} plate, {n} holes", spec.material,
                lambda s=spec, n=n, b=build: b(s, n), spec.kind, flat=True))
    return variants


def _convex_prism(points: Sequence[tuple[float, float]], z0: float, z1: float,
                  scale: float = 1.0, offset: Sequence[float] = (0, 0)) -> Part:
    """Extrusion of a counter-clockwise convex polygon (x, y) between z0 and z1."""
    pts = np.asarray(points, dtype=float) * scale + np.asarray(offset, dtype=float)
    edges = np.roll(pts, -1, axis=0) - pts
    if np.any(edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
              - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0] <= 0):
        raise ValueError("polygon must be convex and counter-clockwise")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    bound = box(((hi - lo)[0] / 2, (hi - lo)[1] / 2, (z1 - z0) / 2),
                ((lo + hi)[0] / 2, (lo + hi)[1] / 2, (z0 + z1) / 2))
    cuts = [halfspace((*p, 0.0), (e[1], -e[0], 0.0)) for p, e in zip(pts, edges)]
    return solid(bound, *cuts)


# scalpel: handle along +x from 0, blade beyond it; blade outlines in mm, heel at x = 0
BLADES = {
    10: [(0, -2.5), (12, -4.5), (22, -4.2), (28, -2.2), (32, 2.0), (30, 4.0), (0, 4.0)],
    11: [(0, -4.0), (36, 4.0), (0, 4.0)],
    15: [(0, -2.0), (10, -3.0), (16, -2.2), (20, 0.5), (19, 2.0), (0, 2.0)],
}


def _build_scalpel(blade: int) -> ToolModel:
    large = blade >= 20
    scale = 1.3 if large else 1.0
    outline = BLADES[10 if large else blade]
    handle_len, handle_w, handle_t = (140.0, 11.0, 2.6) if large else (125.0, 9.5, 2.2)
    parts = [solid(stadium(handle_len / 2 - handle_w / 2, handle_w / 2, handle_t / 2,
                           (handle_len / 2, 0, 0))),
             solid(box((10.0, 2.0, 0.7), (handle_len + 10.0, 0, 0)))]  # blade fitment
    blade_part = _convex_prism(outline, 0.7, 1.1, scale, (handle_len, 0))
    slot = stadium(6.0, 1.2, 0.2, (handle_len + 9.0, 0, 0.9))
    return ToolModel(tuple(parts + [blade_part, hole(slot, *blade_part.primitives)]))


def _scalpel_variants() -> list[ToolVariant]:
    variants = []
    for blade, handle in ((10, 3), (11, 3), (15, 3), (20, 4)):
        variants.append(ToolVariant(
            "scalpel", f"scalpel_{blade}", f"scalpel, No. {handle} handle with No. {blade} blade",
            "steel_420", lambda b=blade: _build_scalpel(b), flat=True))
    return variants


# retractors: a strip bent about the tool y axis, walking along x in the x-z plane
@dataclass(frozen=True)
class StripSegment:
    length: float
    width0: float
    width1: float
    bend_deg: float = 0.0   # turn before this segment (positive towards +z)


def _build_strip(segments: Sequence[StripSegment], thickness: float) -> ToolModel:
    """Flat segments mitred on the bisector plane at each bend, so neighbours never overlap."""
    angle, position = 0.0, np.zeros(3)
    frames = []
    for seg in segments:
        angle += math.radians(seg.bend_deg)
        u = np.array([math.cos(angle), 0.0, math.sin(angle)])
        frames.append((position.copy(), u))
        position = position + seg.length * u
    parts = []
    for i, (seg, (start, u)) in enumerate(zip(segments, frames)):
        n = np.array([-u[2], 0.0, u[0]])
        rotation = np.column_stack([u, [0.0, 1.0, 0.0], n])
        extra = thickness * 2
        wmax = max(seg.width0, seg.width1) / 2
        centre = start + u * seg.length / 2
        prims = [box((seg.length / 2 + extra, wmax, thickness / 2), centre, rotation)]
        taper = (seg.width1 - seg.width0) / 2 / seg.length
        for side in (1, -1):  # side edges (trapezoid)
            edge_point = start + side * np.array([0, seg.width0 / 2, 0])
            normal = rotation @ np.array([-side * taper, side * 1.0, 0.0])
            prims.append(halfspace(edge_point, normal))
        if i > 0:
            prims.append(halfspace(start, -(u + frames[i - 1][1])))
        if i < len(segments) - 1:
            prims.append(halfspace(start + seg.length * u, u + frames[i + 1][1]))
        parts.append(solid(*prims))
    return ToolModel(tuple(parts))


S = StripSegment
RETRACTORS = {  # key: (kind, description, thickness mm, segments handle-first)
    "hohmann_8": ("hohmann", "Hohmann retractor, 8 mm blade", 2.0,
                  [S(140, 16, 16), S(50, 8, 8, 25), S(12, 8, 2, 45)]),
    "hohmann_18": ("hohmann", "Hohmann retractor, 18 mm blade", 2.0,
                   [S(150, 18, 18), S(60, 18, 18, 20), S(15, 18, 4, 50)]),
    "hohmann_24": ("hohmann", "Hohmann retractor, 24 mm blade", 2.5,
                   [S(160, 20, 20), S(70, 24, 24, 20), S(18, 24, 6, 50)]),
    "langenbeck_40x10": ("langenbeck", "Langenbeck retractor, 40 x 10 mm blade", 2.5,
                         [S(170, 14, 12), S(40, 10, 10, 90)]),
    "langenbeck_60x20": ("langenbeck", "Langenbeck retractor, 60 x 20 mm blade", 2.5,
                         [S(180, 16, 14), S(60, 20, 20, 90)]),
    "army_navy": ("army_navy", "army-navy retractor", 2.0,
                  [S(30, 13, 13), S(150, 15, 15, 90), S(40, 17, 17, 90)]),
}
del S


def _retractor_variants() -> list[ToolVariant]:
    return [ToolVariant("retractor", f"retractor_{key}", description, "steel_316l",
                        lambda s=segments, t=thickness: _build_strip(s, t), kind, flat=True)
            for key, (kind, description, thickness, segments) in RETRACTORS.items()]


# drill bits: axis +z from the point at z = 0
def _build_drill(diameter: float, length: float) -> ToolModel:
    """Tip cone (118 deg), fluted part as a web-and-lands slab turning with a 30 deg helix,
    plain shank. The slab is a few-step staircase of the helix, fine at X-ray resolution."""
    r = diameter / 2
    tip = r / math.tan(math.radians(59))
    flute_end = 0.55 * length
    lead = math.pi * diameter / math.tan(math.radians(30))
    n = max(int((flute_end - tip) / (lead / 8)), 1)
    step = (flute_end - tip) / n
    parts = [solid(frustum(0.0, r, 0, tip))]
    for i in range(n):
        z = tip + (i + 0.5) * step
        rotation = rotation_about_axis((0, 0, 1), 2 * math.pi * z / lead)
        parts.append(solid(cylinder(r, z - step / 2, z + step / 2),
                           box((r, 0.45 * r, step / 2), (0, 0, z), rotation)))
    parts.append(solid(cylinder(r, flute_end, length)))
    return ToolModel(tuple(parts))


def _drill_variants() -> list[ToolVariant]:
    return [ToolVariant("drill_bit", f"drill_bit_{_mm(d)}x{length}",
                        f"{_mm(d)} mm drill bit, {length} mm",
                        "steel_420", lambda d=d, L=length: _build_drill(d, L))
            for d, length in ((2.0, 110), (2.5, 110), (3.2, 145), (4.5, 145))]


# intramedullary nails: axis +z from the distal tip at z = 0
def _build_nail(diameter: float, length: float, hole_d: float) -> ToolModel:
    """Cannulated rod, tapered tip, two distal and two proximal transverse locking holes.
    Holes cut the wall only: the part of a hole inside the cannulation is added back."""
    r, tip = diameter / 2, 2 * diameter
    cannula = cylinder(0.35 * r, 0, length)
    body = cylinder(r, tip, length)
    parts = [solid(frustum(0.6 * r, r, 0, tip)), solid(body), hole(cannula)]
    hole_z = (tip + 10, tip + 25, length - 40, length - 20)
    for i, z in enumerate(hole_z):
        axis = (1, 0, 0) if i % 2 == 0 else (0.0, 1.0, 0.0)
        bolt = cylinder(hole_d / 2, -r - 1, r + 1, origin=(0, 0, z), axis=axis)
        parts += [hole(bolt, body), solid(bolt, cannula)]
    return ToolModel(tuple(parts))


def _nail_variants() -> list[ToolVariant]:
    specs = (("tibial", 9.0, 300, 5.1), ("tibial", 10.0, 330, 5.1), ("femoral", 11.0, 380, 5.1),
             ("humeral", 8.0, 240, 4.0))
    return [ToolVariant("intramedullary_nail", f"nail_{kind}_{_mm(d)}x{length}",
                        f"{kind} intramedullary nail, {_mm(d)} mm, {length} mm", "ti6al7nb",
                        lambda d=d, L=length, h=h: _build_nail(d, L, h), kind)
            for kind, d, length, h in specs]


class ToolCatalog:
    """Variants in a fixed order (family, then as listed); all built-in ones by default."""

    def __init__(self, variants: Sequence[ToolVariant] | None = None) -> None:
        self.variants = tuple(_builtin_variants() if variants is None else variants)
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("tool variant names must be unique")
        unknown = {v.material for v in self.variants} - set(ALLOYS)
        if unknown:
            raise ValueError(f"unknown tool materials {sorted(unknown)}")
        self._by_name = dict(zip(names, self.variants))
        log.debug("tool catalogue: %d variants in %d families", len(self.variants),
                  len(self.families))

    def __len__(self) -> int:
        return len(self.variants)

    def __iter__(self) -> Iterator[ToolVariant]:
        return iter(self.variants)

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(v.family for v in self.variants))

    def by_name(self, name: str) -> ToolVariant:
        return self._by_name[name]

    variant = by_name

    def in_family(self, family: str) -> list[ToolVariant]:
        return [v for v in self.variants if v.family == family]

    def sample_variant(self, rng: np.random.Generator, family: str | None = None) -> ToolVariant:
        """A family uniformly (screws would otherwise dominate), then a variant in it."""
        family = family or self.families[int(rng.integers(len(self.families)))]
        members = self.in_family(family)
        return members[int(rng.integers(len(members)))]


def _builtin_variants() -> list[ToolVariant]:
    return (_screw_variants() + _k_wire_variants() + _plate_variants() + _scalpel_variants()
            + _retractor_variants() + _drill_variants() + _nail_variants())


@lru_cache(maxsize=1)
def default_catalog() -> ToolCatalog:
    """One shared catalogue, so each model's geometry is built once per process."""
    return ToolCatalog()


# ---- placement and rendering ----------------------------------------------------------------
@dataclass(frozen=True)
class PlacedTool:
    variant: ToolVariant
    world_from_tool: np.ndarray

    @property
    def description(self) -> str:
        return self.variant.description

    @property
    def centre_world(self) -> np.ndarray:
        rotation, translation = self.world_from_tool[:3, :3], self.world_from_tool[:3, 3]
        return rotation @ self.variant.model.centre + translation

    def prompts(self) -> list[str]:
        return tool_prompts(self.variant)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform on SO(3) (normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _flat_rotation(rng: np.random.Generator, beam: np.ndarray, max_tilt_deg: float) -> np.ndarray:
    """Tool z (its plate normal) within `max_tilt_deg` of the beam, random spin and side."""
    spin = rotation_about_axis((0, 0, 1), rng.uniform(0, 2 * math.pi))
    azimuth = rng.uniform(0, 2 * math.pi)
    tilt_axis = np.array([math.cos(azimuth), math.sin(azimuth), 0.0])
    tilt = rotation_about_axis(tilt_axis, math.radians(rng.uniform(0, max_tilt_deg)))
    flip = np.diag([1.0, -1.0, -1.0]) if rng.random() < 0.5 else np.eye(3)
    return _rotation_z_to(beam) @ tilt @ flip @ spin


def place_tool(variant: ToolVariant, rng: np.random.Generator, target_world: Sequence[float],
               spread_mm: float = 30.0, beam_direction_world: Sequence[float] | None = None,
               max_tilt_deg: float = 35.0) -> PlacedTool:
    """Put the tool's centre uniformly within `spread_mm` of `target_world`. Flat tools lie
    roughly across the beam (as plates on bone and retractors in a wound do); the rest point
    anywhere."""
    if variant.flat and beam_direction_world is not None:
        rotation = _flat_rotation(rng, np.asarray(beam_direction_world, float), max_tilt_deg)
    else:
        rotation = random_rotation(rng)
    offset = rng.normal(size=3)
    offset *= spread_mm * rng.random() ** (1 / 3) / np.linalg.norm(offset)
    position = np.asarray(target_world, dtype=float) + offset
    world_from_tool = _frame(position - rotation @ variant.model.centre, rotation)
    return PlacedTool(variant, world_from_tool)


def tool_path_lengths(placed_tools: Sequence[PlacedTool], camera: CameraProjection,
                      exposed: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W) float32 path length (mm) of each tool on the ray source -> pixel centre."""
    height, width = camera.sensor_height, camera.sensor_width
    if exposed is None:
        exposed = np.ones((height, width), dtype=bool)
    out = np.zeros((len(placed_tools), height, width), dtype=np.float32)
    if not placed_tools:
        return out
    pixels = np.flatnonzero(exposed)
    tools, prims = _pack([t.variant.model for t in placed_tools],
                         [t.world_from_tool for t in placed_tools])
    pixel00, col_step, row_step = camera.detector_grid_world()
    _trace_pixels(camera.source_world, pixel00, col_step, row_step, pixels, width, tools, prims,
                  out.reshape(len(placed_tools), -1))
    return out


def add_tools_to_render(result: RenderResult, placed_tools: Sequence[PlacedTool],
                        energy_kev: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Line integral with the tools' mu(E) x length added, their masks and descriptions."""
    lengths = tool_path_lengths(placed_tools, result.camera, result.exposed)
    mu = np.array([alloy_linear_attenuation_per_mm(t.variant.material, energy_kev)[0]
                   for t in placed_tools], dtype=np.float32)
    line_integral = result.line_integral + np.tensordot(mu, lengths, axes=1) if len(mu) \
        else result.line_integral.copy()
    return (line_integral.astype(np.float32), lengths > 0, [t.description for t in placed_tools])
