from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fluorosam_ros.launch_runner import LaunchError, Launcher, ProcessSpec, load_launch_file, parse_launch_arguments

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_carm_sim_launch_file_builds_the_node_command():
    (spec,) = load_launch_file(REPO_ROOT / "launch" / "carm_sim.launch.yaml", {"image_size_px": "200"})
    assert spec.name == "carm_sim"
    assert spec.command[:3] == [sys.executable, "-m", "fluorosam_ros.nodes.carm_sim"]
    assert "__node:=carm_sim" in spec.command
    files = [spec.command[i + 1] for i, token in enumerate(spec.command) if token == "--params-file"]
    assert [Path(f).name for f in files] == ["carm.yaml", "twin.yaml"]
    assert "image_size_px:=200" in spec.command


def test_substitutions_namespaces_and_remaps(tmp_path, monkeypatch):
    monkeypatch.setenv("FLUOROSAM_TEST_RATE", "7.5")
    launch = tmp_path / "x.launch.yaml"
    launch.write_text("""
launch:
- arg: {name: size, default: "64"}
- let: {name: rate, value: "$(env FLUOROSAM_TEST_RATE)"}
- group:
    push-ros-namespace: sim
    children:
    - node:
        pkg: fluorosam_ros
        exec: carm_sim
        param: [{name: image_size_px, value: "$(var size)"}, {name: state_rate_hz, value: "$(var rate)"}]
        remap: [{from: /carm/image, to: /camera/image}]
- executable: {cmd: "echo $(dirname)", name: echo}
""")
    node, echo = load_launch_file(launch, parse_launch_arguments(["size:=32"]))
    assert "image_size_px:=32" in node.command and "state_rate_hz:=7.5" in node.command
    assert "__ns:=/sim" in node.command and "/carm/image:=/camera/image" in node.command
    assert echo.command == ["echo", str(tmp_path)]


@pytest.mark.parametrize("body, message", [
    ("launch:\n- node: {pkg: other_pkg, exec: talker}\n", "cannot start"),
    ("launch:\n- arg: {name: a}\n", "needs a value"),
    ("launch:\n- node: {pkg: fluorosam_ros, exec: carm_sim, param: [{name: x, value: $(var nope)}]}\n", "not declared"),
    ("launch:\n- frobnicate: {}\n", "unsupported"),
    ("nodes: []\n", "top-level"),
])
def test_bad_launch_files_are_refused_with_a_reason(tmp_path, body, message):
    launch = tmp_path / "bad.launch.yaml"
    launch.write_text(body)
    with pytest.raises(LaunchError, match=message):
        load_launch_file(launch)


def test_unknown_launch_argument_is_refused():
    with pytest.raises(LaunchError, match="unknown launch arguments"):
        load_launch_file(REPO_ROOT / "launch" / "carm_sim.launch.yaml", {"nope": "1"})
    with pytest.raises(LaunchError):
        parse_launch_arguments(["novalue"])


def test_launcher_respawns_and_stops(tmp_path):
    spec = ProcessSpec("short", [sys.executable, "-c", "print('hi')"], output="log", respawn=True, respawn_delay_s=0.0)
    launcher = Launcher([spec], log_dir=tmp_path)
    launcher.start()
    first = launcher.processes["short"]
    first.wait()
    launcher.poll()
    assert launcher.processes["short"] is not first
    launcher.stop()
    assert "hi" in (tmp_path / "short.log").read_text()


def test_ros_args_overrides_reach_the_named_node_or_every_node():
    from fluorosam_ros.launch_runner import apply_overrides, split_ros_args

    arguments, overrides = split_ros_args(["image_size_px:=128", "--ros-args", "-p",
                                           "planner_node:collimation.margin_mm:=15.0", "-p", "frame_id:=map"])
    assert arguments == ["image_size_px:=128"]
    assert overrides == [("planner_node", "collimation.margin_mm:=15.0"), (None, "frame_id:=map")]
    specs = load_launch_file(REPO_ROOT / "launch" / "sim_demo.launch.yaml", {})
    apply_overrides(specs, overrides)
    by_name = {spec.name: spec.command for spec in specs}
    assert by_name["planner_node"][-4:] == ["-p", "collimation.margin_mm:=15.0", "-p", "frame_id:=map"]
    assert by_name["carm_sim"][-2:] == ["-p", "frame_id:=map"]
    assert "collimation.margin_mm:=15.0" not in by_name["carm_sim"]
    with pytest.raises(LaunchError, match="no node named"):
        apply_overrides(specs, [("nobody", "x:=1")])
    with pytest.raises(LaunchError, match="only"):
        split_ros_args(["--ros-args", "-r", "a:=b"])


@pytest.mark.parametrize("launch_file", sorted(p.name for p in (REPO_ROOT / "launch").glob("*.launch.yaml")))
def test_every_shipped_launch_file_loads(launch_file):
    specs = load_launch_file(REPO_ROOT / "launch" / launch_file, {})
    assert specs and all(spec.command[:2] == [sys.executable, "-m"] for spec in specs)


@pytest.mark.ros
@pytest.mark.timeout(120)
def test_fluorosam_launch_starts_the_nodes_with_overrides_and_stops_on_sigint():
    import signal
    import subprocess
    import time

    process = subprocess.Popen([sys.executable, "-m", "fluorosam_ros.cli", "launch", "launch/carm_sim.launch.yaml",
                                "image_size_px:=64", "--ros-args", "-p", "carm_sim:sensor_width_px:=1024",
                                "-p", "carm_sim:sensor_height_px:=1024"],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "detector 64x64" in line or process.poll() is not None:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    assert "[carm_sim]" in output and "detector 64x64" in output, output[-3000:]
    assert "3.104 mm" in output  # 1024 px of 0.194 mm binned to 64 (1536 would give 4.656): the override arrived
    assert process.returncode == 0
