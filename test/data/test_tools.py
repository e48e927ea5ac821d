from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fluorosam_ros.data import tools as T
from fluorosam_ros.geometry.carm import CArmConfig, CArmGeometry, CArmPose
from fluorosam_ros.geometry.transforms import rotation_about_axis
from fluorosam_ros.twin.materials import ALLOYS, alloy_linear_attenuation_per_mm
from fluorosam_ros.twin.renderer import RenderResult


@pytest.fixture(scope="module")
def geometry():
    return CArmGeometry(CArmConfig.for_supine_patient().with_image_size(128))


@pytest.fixture(scope="module")
def camera(geometry):
    return geometry.camera(CArmPose((0, 0, 0), 0, 0))


@pytest.fixture(scope="module")
def catalog():
    return T.default_catalog()


# ---- analytic path lengths against a ray march ----------------------------------------------
def _inside(prim: T.Primitive, points_tool: np.ndarray) -> np.ndarray:
    """Independent point-membership test of one primitive (points in the tool frame)."""
    m = np.linalg.inv(prim.tool_from_local)
    p = points_tool @ m[:3, :3].T + m[:3, 3]
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    a, b, c = prim.params
    rho = np.hypot(x, y)
    if prim.kind == T.CYLINDER:
        return (rho <= a) & (np.abs(z) <= b)
    if prim.kind == T.BOX:
        return (np.abs(x) <= a) & (np.abs(y) <= b) & (np.abs(z) <= c)
    if prim.kind == T.SPHERE:
        return x * x + y * y + z * z <= a * a
    if prim.kind == T.FRUSTUM:
        return (np.abs(z) <= c) & (rho <= a + (b - a) * (z + c) / (2 * c))
    if prim.kind == T.STADIUM:
        nearest_x = np.clip(x, -a, a)
        return (np.hypot(x - nearest_x, y) <= b) & (np.abs(z) <= c)
    return z <= 0


def _ray_march(model: T.ToolModel, world_from_tool, origins, ends, samples=20000):
    """Midpoint sampling of each segment, only over the part inside the tool's bounding box."""
    tool_from_world = np.linalg.inv(world_from_tool)
    lo, hi = model.bounds
    out = []
    for o, e in zip(origins, ends):
        a = tool_from_world[:3, :3] @ o + tool_from_world[:3, 3]
        d = tool_from_world[:3, :3] @ (e - o)
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (lo - 1 - a) / d, (hi + 1 - a) / d
        start = max(0.0, np.nanmax(np.minimum(t0, t1)))
        stop = min(1.0, np.nanmin(np.maximum(t0, t1)))
        if stop <= start:
            out.append(0.0)
            continue
        t = start + (np.arange(samples) + 0.5) / samples * (stop - start)
        pts = a + t[:, None] * d
        total = np.zeros(samples)
        for part in model.parts:
            inside = np.ones(samples, dtype=bool)
            for prim in part.primitives:
                inside &= _inside(prim, pts)
            total += part.sign * inside
        out.append(total.sum() / samples * (stop - start) * np.linalg.norm(d))
    return np.array(out)


def _random_pose(rng):
    return T._frame(rng.uniform(-20, 20, 3), T.random_rotation(rng))


def _random_segments(rng, centre, n=120, reach=12.0):
    """Segments 200 mm long passing within `reach` of `centre`, in random directions."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    through = centre + rng.uniform(-reach, reach, (n, 3))
    return through - 100 * direction, through + 100 * direction


PRIMITIVE_CASES = {
    "cylinder": T.solid(T.cylinder(4.0, -15, 10, origin=(1, 2, 3), axis=(1, 1, 0))),
    "box": T.solid(T.box((8, 3, 5), (0, 1, 0), rotation_about_axis((1, 2, 3), 0.7))),
    "sphere": T.solid(T.sphere(7.0, (2, 0, -1))),
    "frustum": T.solid(T.frustum(6.0, 1.5, -10, 8, axis=(0, 1, 1))),
    "cone_point": T.solid(T.frustum(0.0, 5.0, 0, 12)),
    "stadium": T.solid(T.stadium(6.0, 3.0, 2.0, (0, 0, 1), rotation_about_axis((0, 1, 0), 0.4))),
    "cylinder_cut_by_halfspace": T.solid(T.cylinder(5.0, -10, 10),
                                         T.halfspace((0, 1, 0), (1, 1, 0))),
}


@pytest.mark.parametrize("case", sorted(PRIMITIVE_CASES))
def test_analytic_path_length_matches_ray_march(case):
    rng = np.random.default_rng(sorted(PRIMITIVE_CASES).index(case))
    model = T.ToolModel((PRIMITIVE_CASES[case],))
    pose = _random_pose(rng)
    lo, hi = model.bounds
    origins, ends = _random_segments(rng, pose[:3, 3] + pose[:3, :3] @ model.centre,
                                     reach=0.4 * float(np.min(hi - lo)))
    analytic = T.model_path_lengths([model], [pose], origins, ends)[0]
    marched = _ray_march(model, pose, origins, ends, samples=20000)  # ~2 um steps
    hits = marched > 2.0
    assert hits.sum() > 20  # the test must actually cross the primitive
    np.testing.assert_allclose(analytic[hits], marched[hits], rtol=0.005)
    np.testing.assert_allclose(analytic, marched, atol=0.05)


def test_composite_tool_matches_ray_march(catalog):
    """Signed parts and inclusion-exclusion: a nail's locking holes cross its cannulation."""
    rng = np.random.default_rng(5)
    for name in ("nail_humeral_8x240", "plate_tubular_3.5_4h", "screw_cannulated_4x40",
                 "retractor_hohmann_8"):
        model = catalog.by_name(name).model
        pose = np.eye(4)
        centre = model.centre
        if name.startswith("nail"):
            centre = np.array([0.0, 0.0, 14 + 10 + 2 * 8.0])  # the first distal locking hole
        origins, ends = _random_segments(rng, centre, n=30, reach=4.0)
        analytic = T.model_path_lengths([model], [pose], origins, ends)[0]
        marched = _ray_march(model, pose, origins, ends, samples=20000)
        assert np.any(marched > 1.0), name
        np.testing.assert_allclose(analytic, marched, atol=0.06, err_msg=name)


def test_nail_locking_hole_cuts_the_wall_only(catalog):
    # humeral nail: 8 mm rod, 2.8 mm cannula, first 4 mm locking hole along x at z = 26 mm.
    # Across the hole (along y) the metal left is 8 - 4 = 4 mm; without adding back the
    # hole ∩ cannula overlap, inclusion-exclusion would give 8 - 2.8 - 4 = 1.2 mm.
    nail = catalog.by_name("nail_humeral_8x240").model
    lengths = T.model_path_lengths([nail], [np.eye(4)], [[0, -50.0, 26.0], [0, -50.0, 60.0]],
                                   [[0, 50.0, 26.0], [0, 50.0, 60.0]])[0]
    np.testing.assert_allclose(lengths, [4.0, 8.0 - 2.8], rtol=1e-9)


def test_straight_line_chords_are_exact():
    model = T.ToolModel((T.solid(T.cylinder(2.0, -50, 50)),))
    origins = np.array([[-100.0, 0, 0], [-100.0, 1.0, 0], [0, 0, -100.0]])
    ends = origins * -1 + np.array([0, 2 * origins[1, 1], 0]) * [[0], [1], [0]]
    lengths = T.model_path_lengths([model], [np.eye(4)], origins, ends)[0]
    np.testing.assert_allclose(lengths, [4.0, 2 * math.sqrt(3.0), 100.0], rtol=1e-9)


# ---- holes --------------------------------------------------------------------------------
def test_cannulated_screw_has_less_path_than_solid():
    spec = next(s for s in T.SCREWS if s.kind == "cannulated" and s.thread_d == 7.3)
    hollow = T._build_screw(spec, 80)
    solid = T._build_screw(dataclasses.replace(spec, cannulation_d=0.0), 80)
    # perpendicular ray through the axis of the smooth shank (shank 4.5 mm, cannula 2.9 mm)
    origins, ends = np.array([[-50.0, 0, -20]]), np.array([[50.0, 0, -20]])
    lengths = T.model_path_lengths([hollow, solid], [np.eye(4)] * 2, origins, ends)[:, 0]
    assert lengths[1] == pytest.approx(4.5, rel=1e-9)
    assert lengths[0] == pytest.approx(4.5 - 2.9, rel=1e-9)
    # along the axis the cannulation removes everything
    axial = T.model_path_lengths([hollow, solid], [np.eye(4)] * 2,
                                 [[0, 0, -200.0]], [[0, 0, 200.0]])
    assert axial[0, 0] == pytest.approx(0.0, abs=1e-9) and axial[1, 0] > 80


def test_plate_with_holes_has_less_path_than_without(camera):
    spec = next(s for s in T.PLATES if s.kind == "locking" and s.system == 3.5)
    plate = T._build_flat_plate(spec, 8)
    blank = T.ToolModel(tuple(p for p in plate.parts if p.sign > 0))
    x = 0.5 * spec.spacing  # the centre of a hole (8 holes, symmetric about 0)
    through_hole = T.model_path_lengths([plate, blank], [np.eye(4)] * 2,
                                        [[x, 0, -30.0]], [[x, 0, 30.0]])
    assert through_hole[0, 0] == 0.0 and through_hole[1, 0] == pytest.approx(spec.thickness)
    between = T.model_path_lengths([plate], [np.eye(4)], [[0, 0, -30.0]], [[0, 0, 30.0]])
    assert between[0, 0] == pytest.approx(spec.thickness)

    rotation = T._rotation_z_to(camera.principal_ray_world)
    pose = T._frame((0, 0, 0), rotation)
    placed = [T.PlacedTool(T.ToolVariant("plate", "a", "a", "steel_316l", lambda: plate), pose),
              T.PlacedTool(T.ToolVariant("plate", "b", "b", "steel_316l", lambda: blank), pose)]
    image = T.tool_path_lengths(placed, camera)
    assert image[0].sum() < 0.9 * image[1].sum()
    assert np.all(image[0] <= image[1] + 1e-4)


# ---- catalogue and text -------------------------------------------------------------------
def test_catalog_size_names_and_descriptions(catalog):
    assert len(catalog.families) >= 5 and len(catalog) >= 30
    for family in ("screw", "k_wire", "plate", "scalpel", "retractor"):
        assert catalog.in_family(family), family
    names = [v.name for v in catalog]
    assert len(set(names)) == len(names)
    assert len({v.description for v in catalog}) == len(catalog)
    for variant in catalog:
        assert variant.description.strip() and variant.material in ALLOYS
        lo, hi = variant.model.bounds
        assert np.all(hi - lo > 0.5), variant.name
    assert [v.name for v in T.default_catalog()] == names  # deterministic order


def test_prompts_include_description_and_vocabulary(catalog):
    screw = catalog.by_name("screw_cannulated_7.3x110")
    prompts = T.tool_prompts(screw)
    assert prompts[0] == "cannulated 7.3 mm screw, 110 mm, 32 mm thread"
    assert "the screw" in prompts and "cannulated screw" in prompts
    assert len(prompts) == len(set(prompts))
    wire = T.tool_prompts(catalog.by_name("k_wire_2.5x230"))
    assert wire[0] == "2.5 mm K-wire, 230 mm" and "Kirschner wire" in wire
    assert "locking plate" in T.tool_prompts(catalog.by_name("plate_locking_3.5_8h"))
    for variant in catalog:
        assert variant.family in T.TOOL_PHRASES
        if variant.kind:
            assert f"{variant.family}:{variant.kind}" in T.TOOL_PHRASES, variant.name


def test_sampling_covers_every_family(catalog):
    rng = np.random.default_rng(0)
    seen = {catalog.sample_variant(rng).family for _ in range(300)}
    assert seen == set(catalog.families)
    assert catalog.sample_variant(rng, "plate").family == "plate"


# ---- placement, masks, attenuation --------------------------------------------------------
def test_placement_respects_spread_and_flat_orientation(catalog, geometry):
    rng = np.random.default_rng(1)
    beam = geometry.principal_ray_world(CArmPose())
    target = np.array([10.0, -20.0, 5.0])
    for _ in range(50):
        variant = catalog.sample_variant(rng)
        placed = T.place_tool(variant, rng, target, spread_mm=25.0, beam_direction_world=beam,
                              max_tilt_deg=30.0)
        rotation = placed.world_from_tool[:3, :3]
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-9)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        assert np.linalg.norm(placed.centre_world - target) <= 25.0 + 1e-9
        if variant.flat:
            cosine = abs(rotation[:, 2] @ beam)
            assert cosine >= math.cos(math.radians(30.0)) - 1e-9, variant.name


@pytest.mark.parametrize("name", ["screw_cortical_3.5x40", "k_wire_1.6x150", "plate_locking_3.5_8h",
                                  "drill_bit_3.2x145", "nail_tibial_9x300", "scalpel_10"])
def test_mask_appears_where_the_tool_centre_projects(catalog, camera, geometry, name):
    rng = np.random.default_rng(2)
    beam = geometry.principal_ray_world(CArmPose())
    placed = T.place_tool(catalog.by_name(name), rng, (5.0, -10.0, 0.0), spread_mm=20.0,
                          beam_direction_world=beam)
    col, row = camera.project(placed.centre_world[None])[0]
    mask = T.tool_path_lengths([placed], camera)[0] > 0
    r, c = int(row), int(col)
    assert mask[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any()
    rows, cols = np.nonzero(mask)
    assert 0 < mask.sum() < mask.size / 2
    # the tool's footprint is spread around its centre, not elsewhere in the image
    assert np.hypot(rows - row, cols - col).min() < 1.5


def test_adding_a_steel_tool_raises_line_integral_by_mu_times_length(catalog, camera, geometry):
    height, width = camera.sensor_height, camera.sensor_width
    exposed = np.zeros((height, width), dtype=bool)
    exposed[10:118, 20:108] = True
    background = np.where(exposed, 1.5, 0.0).astype(np.float32)
    result = RenderResult(background, exposed, camera)
    rng = np.random.default_rng(3)
    beam = geometry.principal_ray_world(CArmPose())
    placed = [T.place_tool(catalog.by_name(n), rng, (0, 0, 0), 10.0, beam)
              for n in ("plate_compression_4.5_6h", "k_wire_2x230")]
    energy = 55.0
    line_integral, masks, descriptions = T.add_tools_to_render(result, placed, energy)
    lengths = T.tool_path_lengths(placed, camera, exposed)
    mu = alloy_linear_attenuation_per_mm("steel_316l", energy)[0]
    np.testing.assert_allclose(line_integral - background, mu * lengths.sum(axis=0),
                               rtol=1e-5, atol=1e-5)
    assert line_integral.max() > 1.5 + mu * 3.0  # crossing the 3.8 mm plate somewhere
    assert not masks[:, ~exposed].any() and masks[0].any() and masks[1].any()
    assert line_integral[~exposed].max() == 0.0
    assert descriptions == ["4.5 mm compression plate, 6 holes", "2 mm K-wire, 230 mm"]


def test_k_wire_across_the_beam_is_as_thick_as_its_diameter(catalog, camera):
    # centre the wire on the ray through pixel (64, 64)'s centre, its axis across that ray
    source = camera.source_world
    pixel = camera.index_to_world_on_detector(np.array(64.5), np.array(64.5))
    ray = (pixel - source) / np.linalg.norm(pixel - source)
    centre = source + 530.0 * ray
    variant = catalog.by_name("k_wire_3.2x300")
    rotation = T._rotation_z_to(np.cross(ray, [1.0, 0.0, 0.0]))
    placed = T.PlacedTool(variant, T._frame(centre - rotation @ variant.model.centre, rotation))
    lengths = T.tool_path_lengths([placed], camera)[0]
    assert lengths[64, 64] == pytest.approx(3.2, rel=1e-5)
    # elsewhere rays meet the wire obliquely (divergent beam), never more than 1/cos(15 deg)
    assert 3.2 <= lengths.max() <= 3.2 / math.cos(math.radians(15))


def test_no_tools_gives_empty_outputs(camera):
    assert T.tool_path_lengths([], camera).shape == (0, camera.sensor_height, camera.sensor_width)
