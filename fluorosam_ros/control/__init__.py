"""Closing the loop from a request to a new, collimated image (plain Python, no rclpy).

One concept per module:
  safety        finite-input checks and the "every target pose is within limits" guard
  structure     a localised structure: centroid, oriented (PCA) box, points; box overlap metrics
  visual_hull   image-only localisation: masks from >= 2 posed views carved on a voxel grid
  twin_prior    the twin's CT labels as a shape prior, with an injectable registration error
  registration  2-D/3-D alignment of the projected twin structure to observed masks (fused mode)
  localisation  one entry point for the three modes
  views         named views per anatomy, the pose solver within joint limits, relative moves
  collimation   the collimator rectangle for a target, and the post-acquisition coverage check
  config        PlannerConfig, loaded from config/planner.yaml
  plan          per request: plan_view (pose + collimation), mask_centring, recentre
"""
