"""Reliability and safety, measured (issue 8): the ledger that counts bad inputs, faults and
load figures, and the malformed inputs thrown at each boundary. Plain Python at import: the ROS
side lives in `fluorosam_ros.reliability.ros` and imports rclpy itself."""

from .ledger import ACCEPTED, CRASHED, REFUSED, Ledger

__all__ = ["ACCEPTED", "CRASHED", "REFUSED", "Ledger"]
