"""Velocity-limited joint-space motion between two C-arm poses.

All joints move linearly and arrive together; the slowest joint (given its speed limit) sets
the duration. Joint limits are a box, so every intermediate pose of a move between two valid
poses is valid too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .carm import CArmConfig, CArmPose


@dataclass(frozen=True)
class JointMotion:
    start: CArmPose
    goal: CArmPose
    duration_s: float

    @classmethod
    def plan(cls, start: CArmPose, goal: CArmPose, config: CArmConfig) -> "JointMotion":
        delta = goal.as_array() - start.as_array()
        translation_s = np.linalg.norm(delta[:3]) / config.max_translation_speed_mm_s
        rotation_s = np.max(np.abs(delta[3:])) / config.max_angular_speed_deg_s
        return cls(start, goal, float(max(translation_s, rotation_s)))

    def pose_at(self, elapsed_s: float) -> CArmPose:
        if self.duration_s <= 0:
            return self.goal
        fraction = float(np.clip(elapsed_s / self.duration_s, 0.0, 1.0))
        values = self.start.as_array() + fraction * (self.goal.as_array() - self.start.as_array())
        return CArmPose(tuple(values[:3]), float(values[3]), float(values[4]))

    def progress(self, elapsed_s: float) -> float:
        return 1.0 if self.duration_s <= 0 else float(np.clip(elapsed_s / self.duration_s, 0.0, 1.0))

    def peak_speeds(self) -> tuple[float, float]:
        """(mm/s, deg/s) of the motion, for checking the limits."""
        if self.duration_s <= 0:
            return 0.0, 0.0
        delta = self.goal.as_array() - self.start.as_array()
        return (float(np.linalg.norm(delta[:3]) / self.duration_s),
                float(np.max(np.abs(delta[3:])) / self.duration_s))
