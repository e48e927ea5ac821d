"""Rewrite the ROS wheels' exported CMake files to use this venv's Python and numpy headers.

The wheels are built in a manylinux image whose Python lives under /opt/python/...; their
`*Export.cmake` files carry those include paths, and `rosidl_generate_interfaces` then fails
to find Python.h and numpy's headers here.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILDER_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILDER_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"
)


def rewrite(venv: Path) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for cmake_file in sorted((venv / "share").glob("*/cmake/*.cmake")):
        text = cmake_file.read_text(encoding="utf-8")
        new = BUILDER_NUMPY_INCLUDE.sub(numpy_include, text)
        new = BUILDER_PYTHON_INCLUDE.sub(python_include, new)
        if new != text:
            cmake_file.write_text(new, encoding="utf-8")
            changed += 1
    return changed


if __name__ == "__main__":
    count = rewrite(Path(sys.argv[1]))
    print(f"[setup] rewrote include paths in {count} CMake files")
