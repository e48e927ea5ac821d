from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.geometry.collimation import Collimation, CollimationError


def test_open_field_covers_the_detector():
    assert Collimation.open().field_mask(8, 6).all()
    assert Collimation.open().area_fraction(8, 6) == 1.0


def test_rectangle_field_selects_pixel_centres_inside():
    field = Collimation.rectangle(2, 1, 5, 4).field_mask(8, 6)
    assert field.sum() == 3 * 3
    assert field[1:4, 2:5].all()


def test_iris_cuts_the_corners():
    rectangle = Collimation.rectangle(0, 0, 100, 100)
    iris = rectangle.with_iris(50, 50, 50)
    assert iris.area_fraction(100, 100) == pytest.approx(np.pi / 4, abs=0.01)
    assert not iris.field_mask(100, 100)[0, 0]


@pytest.mark.parametrize("bad", [
    Collimation.rectangle(-1, 0, 5, 5),
    Collimation.rectangle(0, 0, 11, 5),
    Collimation.rectangle(5, 0, 5, 5),
    Collimation.rectangle(0, float("nan"), 5, 5),
    Collimation.rectangle(0, 0, 5, 5).with_iris(-1, 2, 2),
])
def test_invalid_fields_are_refused(bad):
    with pytest.raises(CollimationError):
        bad.validate(10, 10)


def test_clipping_and_scaling():
    clipped = Collimation.rectangle(-5, -5, 20, 8).clipped(10, 10)
    clipped.validate(10, 10)
    assert (clipped.col_min_px, clipped.col_max_px, clipped.row_max_px) == (0, 10, 8)
    scaled = Collimation.rectangle(3, 3, 9, 6).scaled(1 / 3)
    assert (scaled.col_min_px, scaled.row_max_px) == (1, 2)
    assert Collimation.centered(4, 2, 10, 10).field_mask(10, 10).sum() == 8
