"""The planner's configuration: one dataclass per concern, loaded from config/planner.yaml.

The YAML is a ROS 2 parameter file (`<node>: ros__parameters: {section: {key: value}}`), so the
planner node can take it with `--params-file`; nested sections become dotted parameter names
("collimation.margin_mm"), which `from_parameters` accepts as well. Unknown keys are errors
(a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .collimation import CollimationPolicy
from .image_registration import ImageRegistrationConfig
from .registration import RegistrationConfig
from .safety import PlanningInputError
from .twin_prior import RegistrationErrorConfig
from .views import ViewPlanningConfig
from .visual_hull import HullConfig

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "planner.yaml"
NODE_NAME = "planner_node"


@dataclass(frozen=True)
class PlannerConfig:
    localisation_mode: str = "fused"   # image | twin | fused
    twin_hint: bool = False            # prompt the model with text + the twin's projected centroid
    hull: HullConfig = field(default_factory=HullConfig)
    image_registration: ImageRegistrationConfig = field(default_factory=ImageRegistrationConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    twin_error: RegistrationErrorConfig = field(default_factory=RegistrationErrorConfig)
    views: ViewPlanningConfig = field(default_factory=ViewPlanningConfig)
    collimation: CollimationPolicy = field(default_factory=CollimationPolicy)

    def __post_init__(self) -> None:
        if self.localisation_mode not in ("image", "twin", "fused"):
            raise PlanningInputError(f"localisation_mode must be image, twin or fused, got {self.localisation_mode!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PlannerConfig":
        values: dict[str, Any] = {}
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in sections:
                raise PlanningInputError(f"unknown planner setting {key!r}; known: {sorted(sections)}")
            kind = sections[key].default_factory if sections[key].default_factory is not dataclasses.MISSING else None
            if kind is None:
                values[key] = value
                continue
            if not isinstance(value, Mapping):
                raise PlanningInputError(f"planner section {key!r} must be a mapping")
            values[key] = _build(type(kind()), value, key)
        return cls(**values)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> "PlannerConfig":
        """From flat ROS parameter names ("collimation.margin_mm": 12.0)."""
        nested: dict[str, Any] = {}
        for name, value in parameters.items():
            section, _, key = name.partition(".")
            if key:
                nested.setdefault(section, {})[key] = value
            else:
                nested[section] = value
        return cls.from_dict(nested)

    @classmethod
    def from_yaml(cls, path: str | Path = DEFAULT_PATH, node_name: str | None = None) -> "PlannerConfig":
        path = Path(path)
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(document, Mapping):
            raise PlanningInputError(f"{path}: not a mapping")
        for candidate in ([node_name] if node_name else []) + [NODE_NAME, "/**"] + list(document):
            block = document.get(candidate)
            if isinstance(block, Mapping) and "ros__parameters" in block:
                return cls.from_dict(block["ros__parameters"] or {})
        raise PlanningInputError(f"{path}: no '<node>: ros__parameters:' block")

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            result[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return result


def _build(kind: type, values: Mapping[str, Any], section: str):
    fields = {f.name: f for f in dataclasses.fields(kind)}
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise PlanningInputError(f"unknown setting {section}.{key}; known: {sorted(fields)}")
        default = fields[key].default
        if isinstance(default, tuple):
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise PlanningInputError(f"{section}.{key} must be true or false")
        elif isinstance(default, int):
            if isinstance(value, bool) or not float(value).is_integer():
                raise PlanningInputError(f"{section}.{key} must be an integer")
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        converted[key] = value
    return kind(**converted)
