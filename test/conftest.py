"""Shared fixtures. ROS tests get their own DDS domain, kept on this machine."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every test session talks on its own domain and only over loopback, so parallel CI jobs and
# other ROS users on the network never see our traffic.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_profile.xml"))
os.environ.setdefault("ROS_LOG_DIR", str(REPO_ROOT / ".ros" / "log"))
os.environ.setdefault("FLUOROSAM_ROOT", str(REPO_ROOT))


@pytest.fixture(scope="session")
def default_patient():
    from fluorosam_ros.twin.patient import Patient

    return Patient.default()


@pytest.fixture(scope="session")
def default_renderer(default_patient):
    from fluorosam_ros.twin.renderer import CpuRenderer

    return CpuRenderer(default_patient)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def record_figure(request):
    """Record a measured figure; all of them are printed at the end of the run."""

    def record(text: str) -> None:
        _FIGURES.append((request.node.nodeid.split("::")[-1], text))
        print(text)

    return record


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        for test, text in _FIGURES:
            terminalreporter.write_line(f"{text}    [{test}]")
