"""Checks of the nanodrr peer adapter (``nanodrr_peer.py``) against analytic answers.

Quick (a few seconds): 64 x 64 images of small synthetic volumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import nanodrr  # noqa: E402,F401  (a pinned test dependency: fail loudly if it is missing)
from nanodrr_peer import render_line_integral_nanodrr  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SHAPE = (50, 60, 36)  # (I, J, K)


def _affine() -> np.ndarray:
    """Anisotropic, axis-permuted affine with a flip (LAS-like i axis in an LPS world):
    i -> -x (0.9 mm), j -> +z (0.75 mm), k -> +y (1.25 mm)."""
    a = np.zeros((4, 4))
    a[0, 0] = -0.9
    a[2, 1] = 0.75
    a[1, 2] = 1.25
    a[:3, 3] = [30.0, -25.0, -20.0]
    a[3, 3] = 1.0
    return a


def _world(a: np.ndarray, ijk) -> np.ndarray:
    return a[:3, :3] @ np.asarray(ijk, dtype=np.float64) + a[:3, 3]


def _ball(a: np.ndarray, centre: np.ndarray, radius: float, mu: float, ss: int = 3) -> np.ndarray:
    """Partial-volume ball: each voxel holds mu times the fraction of it inside the ball."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1).astype(float)
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    frac = np.zeros(SHAPE)
    for o in np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(-1, 3):
        p = (idx + o) @ a[:3, :3].T + a[:3, 3]
        frac += np.linalg.norm(p - centre, axis=-1) <= radius
    return (mu * frac / ss**3).astype(np.float32)


def _detector(source, look_at, sdd, col_dir, row_dir, pitch, h, w, centre_pix):
    """Explicit detector: plane perpendicular to source->look_at at distance sdd; the
    pixel centre ``centre_pix`` (row, col) is on that axis."""
    axis = (look_at - source) / np.linalg.norm(look_at - source)
    col = pitch * col_dir / np.linalg.norm(col_dir)
    row = pitch * row_dir / np.linalg.norm(row_dir)
    p00 = source + sdd * axis - centre_pix[1] * col - centre_pix[0] * row
    return p00, col, row


def _rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.deg2rad(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


RADIUS, MU0 = 15.0, 0.02


@pytest.fixture(scope="module")
def ball():
    a = _affine()
    centre = _world(a, (np.array(SHAPE) - 1) / 2) + np.array([1.3, -0.7, 0.4])
    return a, centre, _ball(a, centre, RADIUS, MU0)


@pytest.mark.parametrize("mirrored", [False, True])
def test_ball_line_integrals(ball, mirrored):
    a, centre, vol = ball
    radius, mu0 = RADIUS, MU0

    # Oblique view; the source is 400 mm from the ball, detector 800 mm away (magnification 2).
    r = _rot([0.3, 0.2, 1.0], 35.0)
    source = centre - 400.0 * (r @ np.array([0.0, 1.0, 0.0]))
    col_dir, row_dir = r @ np.array([1.0, 0, 0]), r @ np.array([0, 0, 1.0])
    if mirrored:  # col x row now points back at the source: a left-right mirrored detector
        col_dir = -col_dir
    h = w = 64
    p00, col, row = _detector(source, centre, 800.0, col_dir, row_dir, 1.2, h, w, (32, 32))
    img = render_line_integral_nanodrr(vol, a, source, p00, col, row, h, w)
    assert img.shape == (h, w) and img.dtype == np.float32

    # Central ray: 2 R mu.
    assert img[32, 32] == pytest.approx(2 * radius * mu0, rel=0.01)

    # Every chord: 2 sqrt(R^2 - d^2) mu with d the distance of the ray from the centre.
    v, u = np.mgrid[0:h, 0:w]
    pix = p00 + u[..., None] * col + v[..., None] * row
    dirs = (pix - source) / np.linalg.norm(pix - source, axis=-1, keepdims=True)
    rel = centre - source
    d = np.linalg.norm(rel - (dirs @ rel)[..., None] * dirs, axis=-1)
    expected = 2 * np.sqrt(np.clip(radius**2 - d**2, 0, None)) * mu0
    inner = d < 0.8 * radius
    assert inner.sum() > 500
    err = np.abs(img[inner] - expected[inner]) / expected[inner]
    assert err.max() < 0.02, err.max()
    # Outside the ball (beyond one voxel of blur) nothing.
    assert np.abs(img[d > radius + 2.0]).max() < 1e-6


def _project(source, p00, col, row, x):
    """(row, col) of the detector point hit by the ray source -> x (by hand)."""
    n = np.cross(col, row)
    t = np.dot(n, p00 - source) / np.dot(n, x - source)
    hit = source + t * (x - source)
    uv, *_ = np.linalg.lstsq(np.stack([col, row], 1), hit - p00, rcond=None)
    return uv[1], uv[0]


@pytest.mark.parametrize("mirrored", [False, True])
def test_off_centre_cluster_lands_on_its_pixel(mirrored):
    a = _affine()
    vol = np.zeros(SHAPE, np.float32)
    i0, j0, k0 = 9, 44, 7  # off-centre in every axis
    vol[i0 : i0 + 2, j0 : j0 + 2, k0 : k0 + 2] = 1.0
    x = _world(a, (i0 + 0.5, j0 + 0.5, k0 + 0.5))

    vcentre = _world(a, (np.array(SHAPE) - 1) / 2)
    r = _rot([1.0, -0.4, 0.3], 50.0)
    source = vcentre - 500.0 * (r @ np.array([0.0, 1.0, 0.0]))
    col_dir, row_dir = r @ np.array([1.0, 0, 0]), r @ np.array([0, 0, 1.0])
    if mirrored:
        row_dir = -row_dir
    h = w = 64
    p00, col, row = _detector(source, vcentre, 1000.0, col_dir, row_dir, 1.2, h, w, (31.5, 31.5))
    img = render_line_integral_nanodrr(vol, a, source, p00, col, row, h, w)

    er, ec = _project(source, p00, col, row, x)
    assert 3 < er < h - 3 and 3 < ec < w - 3
    assert abs(er - 31.5) > 5 and abs(ec - 31.5) > 5  # really off-centre
    pr, pc = np.unravel_index(np.argmax(img), img.shape)
    assert abs(pr - er) <= 1.0 and abs(pc - ec) <= 1.0
    wgt = img / img.sum()
    v, u = np.mgrid[0:h, 0:w]
    assert (wgt * v).sum() == pytest.approx(er, abs=0.25)
    assert (wgt * u).sum() == pytest.approx(ec, abs=0.25)
