import numpy as np
import pytest

from fluorosam_ros.evaluation.metrics import dice, hausdorff95, iou, score


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_overlap_of_shifted_squares_matches_hand_computation():
    a, b = _square(64, 10, 10, 20), _square(64, 10, 20, 20)  # 20x10 overlap
    assert iou(a, b) == pytest.approx(200 / 600)
    assert dice(a, b) == pytest.approx(400 / 800)


def test_identical_masks_are_perfect_and_empty_prediction_is_worst():
    a = _square(64, 5, 5, 10)
    assert score(a, a).as_dict() == {"iou": 1.0, "dice": 1.0, "hd95_px": 0.0}
    missed = score(np.zeros_like(a), a)
    assert missed.iou == 0.0 and missed.dice == 0.0
    assert missed.hd95_px == pytest.approx(np.hypot(64, 64))


def test_hd95_of_a_shift_is_the_shift():
    a, b = _square(128, 30, 30, 40), _square(128, 30, 37, 40)
    assert hausdorff95(a, b) == pytest.approx(7.0, abs=0.5)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
