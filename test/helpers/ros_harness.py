"""Start our nodes as real processes for a test, and tear them down (logs kept on failure)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fluorosam_ros.launch_runner import Launcher, load_launch_file

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def launched(launch_file: str, log_dir: Path, **arguments: str):
    """Run `launch/<launch_file>` with every node's output in `log_dir/<node>.log`."""
    specs = load_launch_file(REPO_ROOT / "launch" / launch_file, {k: str(v) for k, v in arguments.items()})
    for spec in specs:
        spec.output = "log"
    launcher = Launcher(specs, log_dir=log_dir)
    launcher.start()
    try:
        yield launcher
    finally:
        launcher.stop()


def read_logs(log_dir: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(log_dir.glob("*.log")))


def ros_env_summary() -> str:
    return ", ".join(f"{k}={os.environ.get(k)}" for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"))
