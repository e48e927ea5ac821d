#!/usr/bin/env python3
"""Regenerate docs/interfaces.md (messages, services, actions, the ROS graph and parameters).

    scripts/run.sh python scripts/gen_interface_docs.py [--check]

The generator lives in fluorosam_ros/interface_docs.py (also `fluorosam docs-interfaces`).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fluorosam_ros.interface_docs import main  # noqa: E402

sys.exit(main())
