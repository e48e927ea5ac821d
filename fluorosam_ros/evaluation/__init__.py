"""Evaluation of the segmentation model (and, later, of the control loop) against held-out
data and peers. Plain Python: usable from a notebook, never imports rclpy."""
