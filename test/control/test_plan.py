import numpy as np
import pytest
from control_scenes import pose_at, sphere_mask

from fluorosam_ros.control.config import PlannerConfig
from fluorosam_ros.control.plan import mask_centring, plan_view, recentre
from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.structure import LocalisedStructure
from fluorosam_ros.geometry.carm import CArmGeometry, CArmState


def _ball(centre, radius=20.0, spacing=2.0):
    grid = np.arange(-radius, radius + spacing, spacing)
    points = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    return LocalisedStructure.from_points("ball", "image", points[np.linalg.norm(points, axis=1) <= radius] + centre,
                                          spacing, 1.0)


def test_plan_view_gives_a_valid_collimated_target(small_carm):
    centre = np.array([30.0, -20.0, 10.0])
    current = CArmState(small_carm)
    plan = plan_view(_ball(centre), "caudal", current, PlannerConfig(), angle_deg=15.0)
    assert plan.feasible and not plan.reasons
    target = plan.target_state
    target.geometry.validate(target.pose)
    target.collimation.validate(small_carm.sensor_width_px, small_carm.sensor_height_px)
    assert plan.solution.view.angle_deg == 15.0
    mask = sphere_mask(target.camera(), centre, 20.0)
    _, fraction = mask_centring(mask, target.with_collimation(type(target.collimation).open()))
    assert fraction < 0.01
    assert mask[target.collimation.field_mask(small_carm.sensor_width_px, small_carm.sensor_height_px)].sum() \
        == mask.sum()


@pytest.mark.parametrize("command", ["show the ball in LAO 45", "give me a 45 degree left oblique of the ball"])
def test_an_oblique_angle_said_in_a_command_is_the_planned_angle(small_carm, command):
    """The parser's amount (deg) is what planner_node hands plan_view; it was once dropped, and the
    C-arm went to the default 30 deg for "LAO 45"."""
    from fluorosam_ros.language.parser import CommandParser, ParserConfig
    from fluorosam_ros.language.vocabulary import default_vocabulary

    vocabulary = default_vocabulary()
    intent = CommandParser(vocabulary, ParserConfig(use_embeddings=False)).parse(command.replace("ball", "heart"))
    assert (intent.view, intent.amount, intent.unit) == ("oblique_left", 45.0, "deg"), intent.describe()
    plan = plan_view(_ball(np.zeros(3)), intent.view, CArmState(small_carm), PlannerConfig(), angle_deg=intent.amount)
    assert plan.feasible and plan.solution.view.angle_deg == 45.0
    default = plan_view(_ball(np.zeros(3)), intent.view, CArmState(small_carm), PlannerConfig())
    assert default.solution.view.angle_deg != 45.0


def test_recentre_brings_an_off_centre_target_to_the_middle(small_carm):
    geometry = CArmGeometry(small_carm)
    centre = np.array([10.0, -5.0, 0.0])
    state = CArmState(small_carm, pose_at(geometry, centre + [25.0, 0.0, -15.0], 20.0, 10.0))
    mask = sphere_mask(state.camera(), centre, 15.0)
    _, before = mask_centring(mask, state)
    step = recentre(mask, state, target_world=centre)
    after_state = state.with_pose(step.pose)
    _, after = mask_centring(sphere_mask(after_state.camera(), centre, 15.0), after_state)
    assert before > 0.1 and after < 0.01 and not step.clamped
    assert recentre(sphere_mask(after_state.camera(), centre, 15.0), after_state).pose == step.pose
    with pytest.raises(PlanningInputError, match="empty"):
        recentre(np.zeros_like(mask), state)
