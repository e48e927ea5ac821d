"""Random malformed messages at the plain-Python boundaries the nodes share: images, C-arm
state messages, collimation, poses (carm_sim's limits) and the planner's relative moves. Each
must raise the boundary's own error type, never pass and never raise anything else."""

from __future__ import annotations

from hypothesis import given, settings

from fluorosam_ros.reliability import REFUSED
from fluorosam_ros.reliability import fuzz


@given(fuzz.bad_images())
def test_image_from_msg_refuses_malformed_images(ledger, case):
    assert fuzz.check_image(ledger, case) == REFUSED, ledger.problems()


@given(fuzz.bad_config_messages())
def test_carm_config_from_msg_refuses_nan_and_inconsistent_devices(ledger, case):
    assert fuzz.check_config_message(ledger, case) == REFUSED, ledger.problems()


@given(fuzz.bad_state_messages())
def test_carm_state_from_msg_refuses_nan_poses_and_bad_collimation(ledger, case):
    assert fuzz.check_state_message(ledger, case) == REFUSED, ledger.problems()


@given(fuzz.bad_collimations())
def test_collimation_outside_the_detector_is_refused(ledger, case):
    assert fuzz.check_collimation(ledger, case) == REFUSED, ledger.problems()


@given(fuzz.bad_poses())
def test_pose_validation_refuses_nan_and_out_of_limit_poses(ledger, case):
    assert fuzz.check_pose(ledger, case) == REFUSED, ledger.problems()


@settings(max_examples=150)
@given(fuzz.relative_requests())
def test_relative_moves_never_leave_the_joint_limits(ledger, case):
    """Rotate 500 deg, move 1e9 mm, zoom by inf: refused with a reason, or clamped into the limits."""
    assert fuzz.check_relative_move(ledger, case) == REFUSED, ledger.problems()
