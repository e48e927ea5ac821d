from pathlib import Path

import pytest
import yaml

from fluorosam_ros.control.config import DEFAULT_PATH, PlannerConfig
from fluorosam_ros.control.safety import PlanningInputError


def test_planner_yaml_matches_the_dataclass_defaults():
    assert DEFAULT_PATH.is_file()
    assert PlannerConfig.from_yaml(DEFAULT_PATH) == PlannerConfig()


def test_overrides_types_and_typos(tmp_path: Path):
    config = PlannerConfig.from_parameters({"collimation.margin_mm": 12, "views.depth_range_mm": [-50, 100],
                                            "localisation_mode": "image", "hull.max_voxels": 2e6})
    assert config.collimation.margin_mm == 12.0 and config.views.depth_range_mm == (-50.0, 100.0)
    assert config.localisation_mode == "image" and config.hull.max_voxels == 2_000_000
    round_trip = PlannerConfig.from_dict(config.to_dict())
    assert round_trip == config
    for bad in ({"collimation.margn_mm": 1.0}, {"collimation.margin_mm": -1.0}, {"localisation_mode": "psychic"},
                {"collimation.enabled": "yes"}, {"hull.max_voxels": 2.5}, {"nonsense": 1}):
        with pytest.raises(PlanningInputError):
            PlannerConfig.from_parameters(bad)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"collimation": {"min_size_mm": 50.0}}}}))
    assert PlannerConfig.from_yaml(path).collimation.min_size_mm == 50.0
    path.write_text("just: text\n")
    with pytest.raises(PlanningInputError, match="ros__parameters"):
        PlannerConfig.from_yaml(path)
