"""docs/interfaces.md is generated and cannot drift: regenerated here and compared; every
interface file is documented; the graph and parameter readers are checked on their own."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
import yaml

from fluorosam_ros import interface_docs as docs

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "interfaces.md"


def test_committed_interface_reference_is_current():
    committed = DOC.read_text(encoding="utf-8")
    generated = docs.render()
    if committed != generated:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), generated.splitlines(True),
                                                 "docs/interfaces.md (committed)", "generated"))[:60])
        pytest.fail("docs/interfaces.md is out of date; run `scripts/run.sh python scripts/gen_interface_docs.py`"
                    f"\n{diff}")


def test_every_interface_file_is_documented_with_all_its_fields():
    text = DOC.read_text(encoding="utf-8")
    files = sorted(p for kind in docs.INTERFACE_DIRS for p in (REPO_ROOT / kind).glob(f"*.{kind}"))
    assert len(files) >= 11
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    generated = set(re.findall(r'"((?:msg|srv|action)/\w+\.(?:msg|srv|action))"', cmake))
    assert generated == {f"{p.parent.name}/{p.name}" for p in files}, "CMakeLists.txt and the interface files differ"
    for path in files:
        heading = f"### {path.parent.name}/{path.stem}"
        assert heading in text, f"{path.name} is not documented"
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        interface = docs.parse_interface(path)
        for part in interface.sections:
            for item in [*part.fields, *part.constants]:
                assert f"| `{item.name}`" in section, f"{path.name}: {item.name} missing"


def test_graph_is_read_from_the_node_sources():
    modules = docs.node_modules()
    endpoints = {n: docs.node_endpoints(n, docs.module_path(m)) for n, m in modules.items()}

    def has(node, kind, name, type_name, qos=""):
        return any(e.kind == kind and e.name == name and e.type == type_name and (not qos or e.qos == qos)
                   for e in endpoints[node])

    assert has("carm_sim", "publishes", "/carm/image", "sensor_msgs/msg/Image", "SENSOR_QOS")
    assert has("carm_sim", "publishes", "/carm/image_state", "fluorosam_ros/msg/CArmState", "RELIABLE_QOS")
    assert has("carm_sim", "publishes", "/carm/camera_info", "sensor_msgs/msg/CameraInfo")
    assert has("carm_sim", "publishes", "/carm/state", "fluorosam_ros/msg/CArmState", "STATE_QOS")
    assert has("carm_sim", "service server", "/carm/acquire", "std_srvs/srv/Trigger")
    assert has("carm_sim", "action server", "/carm/move", "fluorosam_ros/action/MoveCArm")
    assert has("segmentation_node", "service server", "/segment", "fluorosam_ros/srv/Segment")
    assert has("segmentation_node", "publishes", "/segmentation/result", "fluorosam_ros/msg/Segmentation")
    segmentation_image = [e for e in endpoints["segmentation_node"] if e.name == "/carm/image"]
    assert segmentation_image and segmentation_image[0].parameter == "image_topic"
    assert has("command_node", "subscribes", "/command/text", "std_msgs/msg/String")
    assert has("command_node", "subscribes", "/command/audio", "fluorosam_ros/msg/AudioChunk")
    assert has("command_node", "publishes", "/command/intent", "fluorosam_ros/msg/Intent")
    assert has("command_node", "publishes", "/command/heard", "std_msgs/msg/String")
    assert has("planner_node", "action server", "/plan/view", "fluorosam_ros/action/AcquireView")
    assert has("planner_node", "action client", "/carm/move", "fluorosam_ros/action/MoveCArm")
    assert has("planner_node", "publishes", "/plan/events", "fluorosam_ros/msg/PlanEvent")
    assert has("planner_node", "publishes", "/plan/target_state", "fluorosam_ros/msg/CArmState")
    assert has("planner_node", "publishes", "/plan/target_pose", "geometry_msgs/msg/PoseStamped")
    assert has("planner_node", "publishes", "/plan/target_collimation", "fluorosam_ros/msg/Collimation")
    assert has("training_node", "service server", "/training/control", "fluorosam_ros/srv/TrainingControl")
    assert has("training_node", "publishes", "/training/status", "fluorosam_ros/msg/TrainingStatus")
    assert has("live_view", "subscribes", "/plan/events", "fluorosam_ros/msg/PlanEvent")
    # every name is resolved (a literal or a declared parameter's default)
    assert all(e.name.startswith("/") for node in endpoints.values() for e in node)
    assert docs.qos_profiles()["STATE_QOS"] == "reliable, transient local, keep last 1"


def test_interface_parser_separates_description_field_comments_and_constants(tmp_path):
    path = tmp_path / "Thing.srv"
    path.write_text("# What a Thing does.\n# Second line.\n\nuint8 FAST=1  # quick\nstring NAME=a # b\n\n"
                    "# Where to go.\nfloat64[3] target_mm\nint32 count 5\n---\n# outcome\nbool ok\n")
    thing = docs.parse_interface(path)
    assert thing.description == "What a Thing does. Second line."
    request, response = thing.sections
    assert [(c.name, c.value, c.comment) for c in request.constants] == [("FAST", "1", "quick"), ("NAME", "a # b", "")]
    assert [(f.type, f.name, f.default, f.comment) for f in request.fields] == [
        ("float64[3]", "target_mm", "", "Where to go."), ("int32", "count", "5", "")]
    assert [(f.name, f.comment) for f in response.fields] == [("ok", "outcome")]
    bad = tmp_path / "Bad.action"
    bad.write_text("bool a\n---\nbool b\n")
    with pytest.raises(ValueError, match="3 sections"):
        docs.parse_interface(bad)


def _flatten(mapping: dict, prefix: str = "") -> set[str]:
    names = set()
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        names |= _flatten(value, name + ".") if isinstance(value, dict) else {name}
    return names


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_parameter_comments_reader_agrees_with_yaml(path):
    parsed = docs.parse_parameter_file(path)
    loaded = yaml.safe_load(path.read_text())
    expected = set()
    for node_key, body in loaded.items():
        expected |= _flatten(body.get("ros__parameters", {}))
    assert {p.name for p in parsed.parameters if not p.is_group} == expected
    assert [k for k, _ in parsed.node_keys] == list(loaded)


def test_parameter_reader_keeps_comments_values_and_sections(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# About x.\nmy_node:   # the node\n  ros__parameters:\n    # --- speed ---\n"
                    "    rate_hz: 10.0     # how often\n    label: \"a # not a comment\"  # real\n"
                    "    inner:            # nested\n      depth: [1, 2]\n    after: true\n")
    parsed = docs.parse_parameter_file(path)
    assert parsed.description == "About x." and parsed.node_keys == [("my_node", "the node")]
    rows = [(p.name, p.value, p.comment, p.is_group) for p in parsed.parameters]
    assert rows == [("speed", "", "", True), ("rate_hz", "10.0", "how often", False),
                    ("label", '"a # not a comment"', "real", False), ("inner", "", "nested", True),
                    ("inner.depth", "[1, 2]", "", False), ("after", "true", "", False)]


def test_launch_files_tell_which_parameter_files_a_node_reads():
    files = docs.launch_parameter_files()
    assert files["carm_sim"] == ["config/carm.yaml", "config/twin.yaml"]
    assert files["live_view"] == ["config/live_view.yaml", "config/twin.yaml"]
    assert files["training_node"] == ["config/model.yaml"]


def test_check_mode_and_cli(tmp_path, capsys):
    from fluorosam_ros.cli import main

    out = tmp_path / "interfaces.md"
    assert docs.main(["--check", "--out", str(out)]) == 1
    assert main(["docs-interfaces", "--out", str(out)]) == 0
    assert docs.main(["--check", "--out", str(out)]) == 0
    assert out.read_text() == DOC.read_text()
