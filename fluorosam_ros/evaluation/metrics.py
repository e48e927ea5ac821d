"""Overlap and boundary metrics between binary masks, in pixels.

An empty prediction of a non-empty target scores IoU = Dice = 0 and HD95 = the image diagonal:
the worst a boundary can be, so that a missed structure is never dropped from a mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class MaskScores:
    iou: float
    dice: float
    hd95_px: float

    def as_dict(self) -> dict[str, float]:
        return {"iou": self.iou, "dice": self.dice, "hd95_px": self.hd95_px}


def _check(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, target = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(f"masks must be 2-D and of one shape, got {prediction.shape} and {target.shape}")
    return prediction, target


def iou(prediction: np.ndarray, target: np.ndarray) -> float:
    prediction, target = _check(prediction, target)
    union = np.logical_or(prediction, target).sum()
    return float(np.logical_and(prediction, target).sum() / union) if union else 1.0


def dice(prediction: np.ndarray, target: np.ndarray) -> float:
    prediction, target = _check(prediction, target)
    total = prediction.sum() + target.sum()
    return float(2 * np.logical_and(prediction, target).sum() / total) if total else 1.0


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95(prediction: np.ndarray, target: np.ndarray) -> float:
    """The 95th percentile of the symmetric boundary-to-boundary distances, in pixels."""
    prediction, target = _check(prediction, target)
    if not prediction.any() and not target.any():
        return 0.0
    if not prediction.any() or not target.any():
        return float(np.hypot(*prediction.shape))
    prediction_edge, target_edge = _boundary(prediction), _boundary(target)
    to_target = ndimage.distance_transform_edt(~target_edge)[prediction_edge]
    to_prediction = ndimage.distance_transform_edt(~prediction_edge)[target_edge]
    return float(np.percentile(np.concatenate([to_target, to_prediction]), 95))


def score(prediction: np.ndarray, target: np.ndarray) -> MaskScores:
    return MaskScores(iou(prediction, target), dice(prediction, target), hausdorff95(prediction, target))
