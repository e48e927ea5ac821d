from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.geometry.carm import CArmConfig, CArmGeometry, CArmPose
from fluorosam_ros.geometry.motion import JointMotion

CONFIG = CArmConfig.for_supine_patient(max_angular_speed_deg_s=20.0, max_translation_speed_mm_s=50.0)


def test_slowest_joint_sets_the_duration_and_all_arrive_together():
    motion = JointMotion.plan(CArmPose((0, 0, 0), 0, 0), CArmPose((30, 40, 0), 60, -10), CONFIG)
    assert motion.duration_s == pytest.approx(3.0)  # 60 deg at 20 deg/s beats 50 mm at 50 mm/s
    halfway = motion.pose_at(1.5)
    assert halfway.alpha_deg == pytest.approx(30) and halfway.beta_deg == pytest.approx(-5)
    np.testing.assert_allclose(halfway.isocenter_mm, (15, 20, 0))
    assert motion.pose_at(10.0) == motion.goal and motion.pose_at(-1) == motion.start
    assert motion.progress(0.75) == pytest.approx(0.25)


def test_velocity_limits_hold(rng):
    geometry = CArmGeometry(CONFIG)
    for _ in range(50):
        start = CArmPose(tuple(rng.uniform(-200, 200, 3)), rng.uniform(-40, 110), rng.uniform(-225, 225))
        goal = CArmPose(tuple(rng.uniform(-200, 200, 3)), rng.uniform(-40, 110), rng.uniform(-225, 225))
        motion = JointMotion.plan(start, goal, CONFIG)
        translation, rotation = motion.peak_speeds()
        assert translation <= 50.0 + 1e-9 and rotation <= 20.0 + 1e-9
        # every intermediate pose of a move between valid poses is valid
        for t in np.linspace(0, motion.duration_s, 7):
            assert geometry.limit_violations(motion.pose_at(t)) == []


def test_zero_length_move_is_instant():
    pose = CArmPose((1, 2, 3), 10, 20)
    motion = JointMotion.plan(pose, pose, CONFIG)
    assert motion.duration_s == 0 and motion.pose_at(0) == pose and motion.progress(0) == 1.0
