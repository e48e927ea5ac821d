import math

import numpy as np
import pytest

from fluorosam_ros.control.safety import PlanningInputError, binary_mask, checked_pose, finite_array, finite_scalar
from fluorosam_ros.geometry.carm import CArmConfig, CArmGeometry, CArmPose, PoseError


def test_finite_array_rejects_nan_inf_and_wrong_shapes():
    assert finite_array("p", [1, 2, 3], (3,)).dtype == float
    with pytest.raises(PlanningInputError, match="p contains 1 NaN/inf"):
        finite_array("p", [1.0, math.nan, 3.0], (3,))
    with pytest.raises(PlanningInputError, match="shape 3"):
        finite_array("p", [1.0, 2.0], (3,))
    with pytest.raises(PlanningInputError, match="shape Nx3"):
        finite_array("points", np.zeros((4, 2)), (None, 3))
    with pytest.raises(PlanningInputError, match="numeric"):
        finite_array("p", ["a", "b", "c"], (3,))


def test_finite_scalar_bounds_and_nan():
    assert finite_scalar("x", "2.5", minimum=0) == 2.5
    for bad in (math.inf, math.nan, None):
        with pytest.raises(PlanningInputError):
            finite_scalar("x", bad)
    with pytest.raises(PlanningInputError, match=">= 0"):
        finite_scalar("x", -1, minimum=0)


def test_binary_mask_thresholds_and_rejects_nan():
    assert binary_mask("m", np.array([[0, 2], [0.0, 1]])).tolist() == [[False, True], [False, True]]
    with pytest.raises(PlanningInputError, match="NaN"):
        binary_mask("m", np.array([[0.0, np.nan]]))
    with pytest.raises(PlanningInputError, match="2-D"):
        binary_mask("m", np.zeros(5))
    with pytest.raises(PlanningInputError, match="expected"):
        binary_mask("m", np.zeros((2, 2)), (3, 3))


def test_checked_pose_enforces_limits():
    geometry = CArmGeometry(CArmConfig())
    assert checked_pose(geometry, CArmPose(alpha_deg=10.0)) == CArmPose(alpha_deg=10.0)
    with pytest.raises(PoseError, match="alpha"):
        checked_pose(geometry, CArmPose(alpha_deg=-60.0))
    with pytest.raises(PoseError, match="NaN"):
        checked_pose(geometry, CArmPose((0.0, math.nan, 0.0)))
