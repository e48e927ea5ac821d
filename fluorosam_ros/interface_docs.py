"""docs/interfaces.md, generated: the package's messages, services and actions (fields and
comments, from msg/ srv/ action/), the ROS graph of every node (read from the node sources:
create_publisher, create_subscription, create_service, create_client, ActionServer,
ActionClient) and each node's parameters (config/*.yaml with their comments, as the launch
files load them, plus those only declared in the code).

    scripts/gen_interface_docs.py            # rewrite docs/interfaces.md
    scripts/gen_interface_docs.py --check    # exit 1 if it is out of date
    fluorosam docs-interfaces [--check]      # the same

Nothing here imports ROS: the sources are parsed, not run, so the document is the code's.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fluorosam_ros"
OUTPUT = Path("docs") / "interfaces.md"
INTERFACE_DIRS = ("msg", "srv", "action")
SECTION_TITLES = {"msg": ("Fields",), "srv": ("Request", "Response"), "action": ("Goal", "Result", "Feedback")}

# One line on what travels on each name (the graph itself is read from the sources).
NOTES = {
    "/carm/image": "the latest frame (mono16 display values, bone bright)",
    "/carm/image_state": "the C-arm state each frame was taken at (same stamp as the frame)",
    "/carm/camera_info": "the frame's pinhole model (OpenCV convention)",
    "/carm/line_integral": "32FC1 line integrals of each frame (publish_line_integral: true)",
    "/carm/state": "pose, geometry, collimation and `moving`, at state_rate_hz (latched)",
    "/carm/acquire": "render and publish a frame at the current pose",
    "/carm/move": "move to a pose (and collimation), optionally acquiring at the end",
    "/diagnostics": "node health (diagnostic_msgs)",
    "/segment": "segment the latest frame or a given image by text and/or points",
    "/segmentation/result": "every /segment answer, with the frame's C-arm state",
    "/command/text": "typed commands",
    "/command/audio": "microphone audio (PCM16 mono, 16 kHz)",
    "/command/intent": "parsed requests",
    "/command/heard": "what the command node heard and understood, as text",
    "/plan/view": "show a structure in a view: segment, localise, plan, move, collimate, acquire",
    "/plan/events": "what the planner did about each request",
    "/plan/target_state": "every planned target (for integrators with their own controller)",
    "/plan/target_pose": "the planned camera pose in the world frame",
    "/plan/target_collimation": "the planned collimation",
    "/training/control": "start, stop or resume training",
    "/training/status": "training progress (latched)",
}

NODE_CALLS = {  # method or class -> (kind, index of the type argument)
    "create_publisher": ("publishes", 0),
    "create_subscription": ("subscribes", 0),
    "create_service": ("service server", 0),
    "create_client": ("service client", 0),
    "ActionServer": ("action server", 1),
    "ActionClient": ("action client", 1),
}
QOS_ARGUMENT = {"create_publisher": 2, "create_subscription": 3}


# ---- interfaces -----------------------------------------------------------------------------
@dataclass
class Field:
    type: str
    name: str
    default: str = ""
    comment: str = ""


@dataclass
class Constant:
    type: str
    name: str
    value: str
    comment: str = ""


@dataclass
class Section:
    title: str
    fields: list[Field] = field(default_factory=list)
    constants: list[Constant] = field(default_factory=list)


@dataclass
class Interface:
    kind: str          # msg | srv | action
    name: str
    path: Path
    description: str
    sections: list[Section]

    @property
    def full_name(self) -> str:
        return f"{PACKAGE}/{self.kind}/{self.name}"


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of an interface line; '#' inside a string constant's value stays code."""
    code, _, comment = line.partition("#")
    if "=" in code and code.split("=", 1)[0].split()[0:1] == ["string"]:
        # string constants run to the end of the line
        return line.rstrip(), ""
    return code.strip(), comment.strip()


def parse_interface(path: Path) -> Interface:
    kind = path.suffix.lstrip(".")
    titles = SECTION_TITLES[kind]
    sections = [Section(titles[0])]
    description: list[str] = []
    pending: list[str] = []
    seen_code = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line == "---":
            if len(sections) == len(titles):
                raise ValueError(f"{path}: more sections than a .{kind} has")
            sections.append(Section(titles[len(sections)]))
            pending, seen_code = [], True
            continue
        if not line:
            if not seen_code and pending:
                description, pending = description + pending, []
            pending = []
            continue
        if line.startswith("#"):
            pending.append(line.lstrip("#").strip())
            continue
        if not seen_code and pending and not description:
            # the file's opening comment describes the interface, not its first field
            description, pending = pending, []
        seen_code = True
        code, inline = _split_comment(line)
        comment = " ".join(pending + ([inline] if inline else []))
        pending = []
        parts = code.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path}: cannot read {raw!r}")
        type_, rest = parts
        if "=" in rest and rest.split("=", 1)[0].strip().isupper():
            name, value = (s.strip() for s in rest.split("=", 1))
            sections[-1].constants.append(Constant(type_, name, value, comment))
        else:
            name, _, default = rest.partition(" ")
            sections[-1].fields.append(Field(type_, name.strip(), default.strip(), comment))
    if len(sections) != len(titles):
        raise ValueError(f"{path}: a .{kind} needs {len(titles)} sections, found {len(sections)}")
    return Interface(kind, path.stem, path, " ".join(description), sections)


def interfaces(root: Path = REPO_ROOT) -> list[Interface]:
    return [parse_interface(p) for kind in INTERFACE_DIRS for p in sorted((root / kind).glob(f"*.{kind}"))]


# ---- the ROS graph, read from the node sources -------------------------------------------------
@dataclass
class Endpoint:
    node: str
    kind: str      # publishes | subscribes | service server | service client | action server | action client
    name: str
    type: str
    qos: str = ""         # the QoS argument as written (a profile of common.py)
    parameter: str = ""   # the name is this parameter's default


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> ROS type prefix ("sensor_msgs/msg/Image") for interface imports."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in INTERFACE_DIRS:
            package, kind = node.module.split(".")[0], node.module.split(".")[-1]
            for alias in node.names:
                names[alias.asname or alias.name] = f"{package}/{kind}/{alias.name}"
    return names


def _declared_defaults(function: ast.AST) -> dict[str, tuple[str, object]]:
    """Variables assigned `declare(self, "name", default, ...)` in a function -> (name, default)."""
    found = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if getattr(call.func, "id", None) == "declare" and len(call.args) >= 3 \
                    and isinstance(call.args[1], ast.Constant) and isinstance(call.args[2], ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = (call.args[1].value, call.args[2].value)
    return found


def qos_profiles(common: Path = REPO_ROOT / PACKAGE / "nodes" / "common.py") -> dict[str, str]:
    """NAME -> "reliable, transient local, keep last 1" for the QoSProfile constants in common.py."""
    profiles = {}
    for node in ast.parse(common.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "QoSProfile":
            values = {k.arg: k.value for k in node.value.keywords}
            words = []
            for key in ("reliability", "durability"):
                if isinstance(values.get(key), ast.Attribute):
                    words.append(values[key].attr.lower().replace("_", " "))
            depth = values.get("depth")
            if isinstance(depth, ast.Constant):
                words.append(f"keep last {depth.value}")
            profiles[node.targets[0].id] = ", ".join(words)
    return profiles


def node_endpoints(node: str, source: Path) -> list[Endpoint]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    types = _imports(tree)
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for function in functions:
        parameters = _declared_defaults(function)
        for call in ast.walk(function):
            if not isinstance(call, ast.Call):
                continue
            callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
            if callee not in NODE_CALLS:
                continue
            kind, type_index = NODE_CALLS[callee]
            if len(call.args) < type_index + 2:
                continue
            type_arg, name_arg = call.args[type_index], call.args[type_index + 1]
            type_name = types.get(getattr(type_arg, "id", ""), ast.unparse(type_arg))
            parameter = ""
            if isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str):
                name = name_arg.value
            elif isinstance(name_arg, ast.Name) and name_arg.id in parameters:
                parameter, name = parameters[name_arg.id]
            else:
                name = f"({ast.unparse(name_arg)})"
            profile = ""
            if callee in QOS_ARGUMENT and len(call.args) > QOS_ARGUMENT[callee]:
                profile = ast.unparse(call.args[QOS_ARGUMENT[callee]])
            found.append(Endpoint(node, kind, name, type_name, profile, parameter))
    return found


def node_modules() -> dict[str, str]:
    from fluorosam_ros.launch_runner import NODE_MODULES

    return dict(sorted(NODE_MODULES.items()))


def module_path(module: str, root: Path = REPO_ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def module_summary(source: Path) -> str:
    """The first paragraph of a module's docstring."""
    doc = ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


# ---- parameters -------------------------------------------------------------------------------
@dataclass
class Parameter:
    name: str
    value: str
    comment: str
    is_group: bool = False     # a heading: a comment line, or a nested section (is_section)
    is_section: bool = False


@dataclass
class ParameterFile:
    path: Path
    description: str
    node_keys: list[tuple[str, str]]     # (node key, its comment)
    parameters: list[Parameter]


def _split_yaml_comment(text: str) -> tuple[str, str]:
    quote = None
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            return text[:index].rstrip(), text[index + 1:].strip()
    return text.rstrip(), ""


def parse_parameter_file(path: Path) -> ParameterFile:
    """A ROS 2 parameter file with its comments: the file's opening comment, each node key, and
    every parameter (nested keys dotted) with its value as written and its comment."""
    description, node_keys, parameters = [], [], []
    stack: list[tuple[int, str]] = []       # (indent, key) of the open mappings under ros__parameters
    params_indent = None
    started = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip())
        stripped = raw.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if not started:
                description.append(text)
            elif params_indent is not None and text:
                heading = text.strip("- ").strip()
                if heading:
                    parameters.append(Parameter(heading, "", "", is_group=True))
            continue
        started = True
        code, comment = _split_yaml_comment(stripped)
        key, _, value = code.partition(":")
        key, value = key.strip(), value.strip()
        if indent == 0:
            node_keys.append((key, comment))
            params_indent, stack = None, []
            continue
        if key == "ros__parameters":
            params_indent, stack = indent, []
            continue
        if params_indent is None or indent <= params_indent:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        if value:
            parameters.append(Parameter(dotted, value, comment))
        else:
            stack.append((indent, key))
            parameters.append(Parameter(dotted, "", comment, is_group=True, is_section=True))
    return ParameterFile(path, " ".join(description), node_keys, parameters)


def launch_parameter_files(root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """exec -> the config files its launch entries load (in launch/*.launch.yaml, first seen first)."""
    files: dict[str, list[str]] = {}

    def walk(entries) -> None:
        for entry in entries or []:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            (kind, body), = entry.items()
            if kind == "node" and isinstance(body, dict):
                listed = files.setdefault(str(body.get("exec", "")), [])
                for parameter in body.get("param", []) or []:
                    source = parameter.get("from") if isinstance(parameter, dict) else None
                    if source:
                        name = "config/" + str(source).rsplit("/config/", 1)[-1]
                        if name not in listed:
                            listed.append(name)
            elif kind == "group" and isinstance(body, dict):
                walk(body.get("children"))

    for path in sorted((root / "launch").glob("*.launch.yaml")):
        walk((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("launch"))
    return files


def declared_parameters(source: Path) -> list[tuple[str, str, str]]:
    """(name, default as written, description) of every `declare(self, "name", default, ...)`
    with a literal name in a node's source."""
    found = []
    for call in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "declare" and len(call.args) >= 3 \
                and isinstance(call.args[1], ast.Constant):
            description = ""
            if len(call.args) >= 4 and isinstance(call.args[3], ast.Constant):
                description = str(call.args[3].value)
            found.append((str(call.args[1].value), ast.unparse(call.args[2]), description))
    return found


# ---- markdown ---------------------------------------------------------------------------------
def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _anchor(interface_name: str) -> str:
    """GitHub's anchor for a heading `kind/Name` ("msg/CArmState" -> "msgcarmstate")."""
    return re.sub(r"[^a-z0-9 _-]", "", interface_name.lower()).replace(" ", "-")


def _type_link(type_name: str, ours: set[str]) -> str:
    """A field or endpoint type, linked when it is one of ours."""
    base = re.match(r"[A-Za-z0-9_/]+", type_name)
    if not base:
        return f"`{type_name}`"
    name = base.group(0)
    for candidate in (name, f"{PACKAGE}/msg/{name}", name.replace(f"{PACKAGE}/", "", 1)):
        short = candidate.replace(f"{PACKAGE}/", "", 1)
        if short in ours:
            return f"[`{type_name}`](#{_anchor(short)})"
    return f"`{type_name}`"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render(root: Path = REPO_ROOT) -> str:
    found = interfaces(root)
    ours = {f"{i.kind}/{i.name}" for i in found}
    modules = node_modules()
    qos = qos_profiles(root / PACKAGE / "nodes" / "common.py")
    endpoints = {node: node_endpoints(node, module_path(module, root)) for node, module in modules.items()}
    loaded = launch_parameter_files(root)
    out = ["# ROS 2 interface reference", "",
           "<!-- Generated by scripts/gen_interface_docs.py (fluorosam_ros/interface_docs.py) from msg/, srv/,",
           "     action/, the node sources and config/*.yaml. Do not edit by hand: run",
           "     `scripts/run.sh python scripts/gen_interface_docs.py`; test/test_interface_docs.py fails",
           "     when this file is out of date. -->", "",
           f"Package `{PACKAGE}`. World frame = patient LPS, millimetres; angles in degrees. Every name "
           "below is absolute, so a namespace in a launch file does not move it (remap instead).", "",
           "## Contents", "",
           "- [ROS graph](#ros-graph): [topics](#topics), [services](#services), [actions](#actions), "
           "[QoS](#qos-profiles)",
           "- [Nodes](#nodes): " + ", ".join(f"[{n}](#{_anchor(n)})" for n in modules),
           "- [Messages, services and actions](#messages-services-and-actions): "
           + ", ".join(f"[{i.kind}/{i.name}](#{_anchor(f'{i.kind}/{i.name}')})" for i in found), ""]

    # ---- graph
    out += ["## ROS graph", "",
            "Read from the node sources (`create_publisher`, `create_subscription`, `create_service`, "
            "`create_client`, `ActionServer`, `ActionClient`). A name set by a parameter shows its default.", ""]
    all_endpoints = [e for node in modules for e in endpoints[node]]

    def grouped(kinds: tuple[str, str]) -> list[list[object]]:
        names = sorted({e.name for e in all_endpoints if e.kind in kinds})
        rows = []
        for name in names:
            here = [e for e in all_endpoints if e.name == name and e.kind in kinds]
            type_names = sorted({e.type for e in here})
            by = [sorted({e.node for e in here if e.kind == kind}) for kind in kinds]
            rows.append([f"`{name}`", ", ".join(_type_link(t, ours) for t in type_names),
                         ", ".join(by[0]) or "-", ", ".join(by[1]) or "-", NOTES.get(name, "")])
        return rows

    out += ["### Topics", ""]
    out += _table(["Topic", "Type", "Published by", "Subscribed by", "What"], grouped(("publishes", "subscribes")))
    out += ["", "### Services", ""]
    out += _table(["Service", "Type", "Server", "Clients", "What"], grouped(("service server", "service client")))
    out += ["", "### Actions", ""]
    out += _table(["Action", "Type", "Server", "Clients", "What"], grouped(("action server", "action client")))
    out += ["", "### QoS profiles", "", "Defined in `fluorosam_ros/nodes/common.py`; a subscriber must be "
            "compatible with the publisher's profile (e.g. a reliable subscriber gets nothing from the "
            "best-effort `/carm/image`).", ""]
    out += _table(["Profile", "Settings"], [[f"`{k}`", v] for k, v in qos.items()])
    out += [""]

    # ---- nodes
    out += ["## Nodes", "",
            "Each node with what it publishes, subscribes, serves and calls, and its parameters: the files "
            "its launch file loads (launch/*.launch.yaml), then any declared only in the code. A shared file "
            "(config/twin.yaml) may hold more than a node reads; a node uses only the parameters it declares.", ""]
    for node, module in modules.items():
        source = module_path(module, root)
        out += [f"### {node}", "", f"`{module}` - {module_summary(source)}", ""]
        rows = [[e.kind, f"`{e.name}`" + (f" (parameter `{e.parameter}`)" if e.parameter else ""),
                 _type_link(e.type, ours), f"`{e.qos}`" if e.qos else "-"]
                for e in endpoints[node]]
        out += _table(["", "Name", "Type", "QoS"], rows) if rows else ["(no topics, services or actions)"]
        out += [""]
        files = loaded.get(node, [])
        in_files: set[str] = set()
        for name in files:
            parsed = parse_parameter_file(root / name)
            keys = "; ".join(f"`{k}`" + (f": {c}" if c else "") for k, c in parsed.node_keys)
            out += [f"Parameters from `{name}` (under {keys}). {parsed.description}", ""]
            rows = []
            for p in parsed.parameters:
                if p.is_section:
                    rows.append([f"**`{p.name}.*`**", "", p.comment])
                elif p.is_group:
                    rows.append([f"*{p.name}*", "", p.comment])
                else:
                    in_files.add(p.name)
                    rows.append([f"`{p.name}`", f"`{p.value}`", p.comment])
            out += _table(["Parameter", "Default", "Comment"], rows) + [""]
        code_only = [(n, d, c) for n, d, c in declared_parameters(source) if n not in in_files]
        if code_only:
            intro = "Declared in the code only" if files else "Parameters, declared in the code"
            out += [f"{intro} (`--ros-args -p name:=value`):", ""]
            out += _table(["Parameter", "Default", "Description"], [[f"`{n}`", f"`{d}`", c] for n, d, c in code_only])
            out += [""]

    # ---- interfaces
    out += ["## Messages, services and actions", "",
            "Field comments are the interface files' own; a comment above a group of fields is shown on the "
            "group's first field.", ""]
    for interface in found:
        out += [f"### {interface.kind}/{interface.name}", "",
                f"`{interface.full_name}` ([{interface.kind}/{interface.path.name}]"
                f"(../{interface.kind}/{interface.path.name}))" + (f": {interface.description}" if interface.description
                                                                   else ""), ""]
        for section in interface.sections:
            if len(interface.sections) > 1:
                out += [f"**{section.title}**", ""]
            if section.constants:
                out += _table(["Constant", "Type", "Value", "Comment"],
                              [[f"`{c.name}`", f"`{c.type}`", f"`{c.value}`", c.comment] for c in section.constants])
                out += [""]
            if section.fields:
                out += _table(["Field", "Type", "Comment"],
                              [[f"`{f.name}`" + (f" = `{f.default}`" if f.default else ""), _type_link(f.type, ours),
                                f.comment] for f in section.fields])
                out += [""]
            if not section.constants and not section.fields:
                out += ["(empty)", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gen_interface_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date, write nothing")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / OUTPUT)
    parsed = parser.parse_args(argv)
    text = render()
    current = parsed.out.read_text(encoding="utf-8") if parsed.out.is_file() else None
    if parsed.check:
        if current != text:
            print(f"{parsed.out} is out of date: run scripts/gen_interface_docs.py", file=sys.stderr)
            return 1
        print(f"{parsed.out} is up to date")
        return 0
    parsed.out.parent.mkdir(parents=True, exist_ok=True)
    parsed.out.write_text(text, encoding="utf-8")
    print(f"wrote {parsed.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
