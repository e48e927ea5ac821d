"""A small runner for ROS 2 YAML launch files, for machines without `ros2 launch`.

ROS 2's `launch`/`launch_ros` are not available from PyPI, so this starts the same files here:
each node is a real process (`python -m fluorosam_ros.nodes.<exec>`) talking DDS to the others.
Supported: `arg`, `let`, `node` (pkg, exec, name, namespace, param [name/value, from],
remap, ros_args, args, output, respawn, respawn_delay), `executable` (cmd), `group`
(namespace), and the substitutions $(var), $(env), $(find-pkg-share), $(dirname).
On a full ROS 2 install, `ros2 launch fluorosam_ros <file>` runs the same files.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

log = logging.getLogger(__name__)

PACKAGE_NAME = "fluorosam_ros"
PACKAGE_SHARE = Path(__file__).resolve().parents[1]  # repository root: config/, launch/
# exec name -> python module with a main()
NODE_MODULES = {
    "carm_sim": "fluorosam_ros.nodes.carm_sim",
    "command_node": "fluorosam_ros.nodes.command_node",
    "live_view": "fluorosam_ros.nodes.live_view",
    "planner_node": "fluorosam_ros.nodes.planner_node",
    "segmentation_node": "fluorosam_ros.nodes.segmentation_node",
    "training_node": "fluorosam_ros.nodes.training_node",
}
SUBSTITUTION = re.compile(r"\$\(([a-z-]+)\s*([^)]*)\)")


class LaunchError(ValueError):
    """A launch file that cannot be run, with the reason."""


@dataclass
class ProcessSpec:
    name: str
    command: list[str]
    output: str = "screen"
    respawn: bool = False
    respawn_delay_s: float = 1.0
    env: dict[str, str] = field(default_factory=dict)


class _Context:
    def __init__(self, path: Path, arguments: dict[str, str]) -> None:
        self.path = path
        self.variables: dict[str, str] = {}
        self.overrides = dict(arguments)
        self.namespace = ""

    def substitute(self, value: Any) -> str:
        text = str(value)
        for _ in range(10):  # nested substitutions resolve inside out
            new = SUBSTITUTION.sub(self._resolve, text)
            if new == text:
                break
            text = new
        return text

    def _resolve(self, match: re.Match) -> str:
        kind, argument = match.group(1), match.group(2).strip()
        if kind == "var":
            if argument not in self.variables:
                raise LaunchError(f"{self.path}: launch argument {argument!r} is not declared")
            return self.variables[argument]
        if kind == "env":
            name, _, default = argument.partition(" ")
            if name not in os.environ and not default:
                raise LaunchError(f"{self.path}: environment variable {name} is not set")
            return os.environ.get(name, default.strip("'\""))
        if kind == "find-pkg-share":
            if argument != PACKAGE_NAME:
                raise LaunchError(f"{self.path}: only {PACKAGE_NAME} can be found here, not {argument!r}")
            return str(PACKAGE_SHARE)
        if kind == "dirname":
            return str(self.path.parent)
        raise LaunchError(f"{self.path}: unsupported substitution $({kind})")


def load_launch_file(path: str | Path, arguments: dict[str, str] | None = None) -> list[ProcessSpec]:
    """Parse a YAML launch file into the processes it starts."""
    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"launch file not found: {path}")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("launch"), list):
        raise LaunchError(f"{path}: expected a top-level 'launch:' list")
    context = _Context(path, arguments or {})
    specs: list[ProcessSpec] = []
    _walk(document["launch"], context, specs)
    unknown = set(context.overrides) - set(context.variables)
    if unknown:
        raise LaunchError(f"{path}: unknown launch arguments {sorted(unknown)}; declared: {sorted(context.variables)}")
    return specs


def _walk(entries: list, context: _Context, specs: list[ProcessSpec]) -> None:
    for entry in entries:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise LaunchError(f"{context.path}: each launch entry must be a one-key mapping, got {entry!r}")
        (kind, body), = entry.items()
        if kind == "arg":
            name = body["name"]
            if name in context.overrides:
                context.variables[name] = context.overrides[name]
            elif "default" in body:
                context.variables[name] = context.substitute(body["default"])
            else:
                raise LaunchError(f"{context.path}: launch argument {name!r} needs a value ({name}:=...)")
        elif kind == "let":
            context.variables[body["name"]] = context.substitute(body["value"])
        elif kind == "node":
            specs.append(_node_spec(body, context))
        elif kind == "executable":
            command = shlex.split(context.substitute(body["cmd"]))
            specs.append(ProcessSpec(body.get("name", Path(command[0]).name), command, body.get("output", "screen")))
        elif kind == "group":
            saved = context.namespace
            if "push-ros-namespace" in body or "namespace" in body:
                ns = context.substitute(body.get("push-ros-namespace", body.get("namespace")))
                context.namespace = f"{saved.rstrip('/')}/{ns.strip('/')}"
            _walk(body.get("children", []), context, specs)
            context.namespace = saved
        else:
            raise LaunchError(f"{context.path}: unsupported launch entry {kind!r}")


def _node_spec(body: dict, context: _Context) -> ProcessSpec:
    package = context.substitute(body.get("pkg", ""))
    executable = context.substitute(body.get("exec", ""))
    if package != PACKAGE_NAME or executable not in NODE_MODULES:
        raise LaunchError(f"{context.path}: cannot start {package}/{executable} here; known executables of "
                          f"{PACKAGE_NAME}: {sorted(NODE_MODULES)}")
    name = context.substitute(body.get("name", executable))
    command = [sys.executable, "-m", NODE_MODULES[executable]]
    command += shlex.split(context.substitute(body.get("args", "")))
    command += ["--ros-args", "-r", f"__node:={name}"]
    namespace = context.substitute(body.get("namespace", "")) or context.namespace
    if namespace:
        command += ["-r", f"__ns:=/{namespace.strip('/')}"]
    for parameter in body.get("param", []):
        if "from" in parameter:
            file = Path(context.substitute(parameter["from"]))
            if not file.is_file():
                raise LaunchError(f"{context.path}: parameter file not found: {file}")
            command += ["--params-file", str(file)]
        else:
            value = context.substitute(parameter['value'])
            # rcl cannot parse `name:=` (an empty value); YAML's '' is the empty string.
            command += ["-p", f"{parameter['name']}:={value if value != '' else chr(39) * 2}"]
    for remap in body.get("remap", []):
        command += ["-r", f"{context.substitute(remap['from'])}:={context.substitute(remap['to'])}"]
    command += shlex.split(context.substitute(body.get("ros_args", "")))
    return ProcessSpec(name, command, body.get("output", "screen"),
                       str(body.get("respawn", "false")).lower() == "true",
                       float(body.get("respawn_delay", 1.0)))


class Launcher:
    """Runs processes, prefixes their output, respawns on request and stops them all cleanly."""

    def __init__(self, specs: list[ProcessSpec], log_dir: Path | None = None,
                 stream: IO[str] | None = None) -> None:
        self.specs = {spec.name: spec for spec in specs}
        if len(self.specs) != len(specs):
            raise LaunchError("two processes share a name")
        self.log_dir = log_dir
        self.stream = stream or sys.stdout
        self.processes: dict[str, subprocess.Popen] = {}
        self._stopping = False
        self._lock = threading.Lock()

    def __enter__(self) -> "Launcher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for name in self.specs:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        spec = self.specs[name]
        env = {**os.environ, **spec.env}
        if spec.output == "log" and self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            sink = (self.log_dir / f"{name}.log").open("a", encoding="utf-8")
            process = subprocess.Popen(spec.command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        else:
            process = subprocess.Popen(spec.command, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1)
            threading.Thread(target=self._pump, args=(name, process), daemon=True).start()
        self.processes[name] = process
        log.info("started %s (pid %d)", name, process.pid)

    def _pump(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._lock:
                self.stream.write(f"[{name}] {line}")
                self.stream.flush()

    def poll(self) -> dict[str, int]:
        """Exit codes of processes that ended (respawning those that asked for it)."""
        ended = {}
        for name, process in list(self.processes.items()):
            code = process.poll()
            if code is None:
                continue
            if self.specs[name].respawn and not self._stopping:
                log.warning("%s exited with %s; respawning", name, code)
                time.sleep(self.specs[name].respawn_delay_s)
                self._spawn(name)
            else:
                ended[name] = code
        return ended

    def restart(self, name: str) -> None:
        self._terminate([self.processes[name]])
        self._spawn(name)

    def kill(self, name: str) -> None:
        """Kill one process hard (fault injection)."""
        self.processes[name].kill()
        self.processes[name].wait()

    def wait(self) -> int:
        """Block until a process that does not respawn ends, or SIGINT/SIGTERM; then stop all."""
        interrupted = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: interrupted.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not interrupted.is_set():
                ended = self.poll()
                if ended:
                    name, code = next(iter(ended.items()))
                    log.warning("%s exited with code %s; stopping the launch", name, code)
                    return code or 1
                interrupted.wait(0.2)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        self._terminate(list(self.processes.values()), timeout_s)

    @staticmethod
    def _terminate(processes: list[subprocess.Popen], timeout_s: float = 5.0) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for process in processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(2.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def split_ros_args(tokens: list[str]) -> tuple[list[str], list[tuple[str | None, str]]]:
    """(launch arguments, parameter overrides) from `a:=1 --ros-args -p node:name:=v -p name:=v`:
    an override names one node (`node:name:=value`) or every node (`name:=value`), and wins over
    the launch file's parameter files and values, as on a ROS 2 command line."""
    if "--ros-args" not in tokens:
        return tokens, []
    cut = tokens.index("--ros-args")
    overrides: list[tuple[str | None, str]] = []
    rest = tokens[cut + 1:]
    for flag, value in zip(rest[::2], rest[1::2] + [None] * (len(rest) % 2)):
        if flag != "-p" or value is None or ":=" not in value:
            raise LaunchError(f"after --ros-args only '-p [node:]name:=value' is understood, got {flag!r} {value!r}")
        colon = value.index(":")
        if value.startswith(":=", colon):
            overrides.append((None, value))
        else:
            overrides.append((value[:colon], value[colon + 1:]))
    return tokens[:cut], overrides


def apply_overrides(specs: list[ProcessSpec], overrides: list[tuple[str | None, str]]) -> None:
    names = {spec.name for spec in specs}
    for node, assignment in overrides:
        if node is not None and node not in names:
            raise LaunchError(f"-p {node}:{assignment}: no node named {node!r} here; nodes: {sorted(names)}")
        for spec in specs:
            if node is None or spec.name == node:
                spec.command += ["-p", assignment]


def parse_launch_arguments(tokens: list[str]) -> dict[str, str]:
    arguments = {}
    for token in tokens:
        if ":=" not in token:
            raise LaunchError(f"launch arguments are name:=value, got {token!r}")
        name, value = token.split(":=", 1)
        arguments[name] = value
    return arguments
