"""One entry point for the three localisation modes (see the modules that implement them):

  image  `visual_hull`:   masks from >= 2 posed views, carved; no prior needed
  twin   `twin_prior`:    the twin's CT labels under its (erroneous) registration
  fused  `registration`:  the twin, re-registered to the observed masks, then read out
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from .registration import RegistrationConfig, RegistrationResult, register_to_masks
from .safety import PlanningInputError
from .structure import LocalisedStructure
from .twin_prior import TwinPrior
from .views import pivot_from_mask, propose_second_view
from .visual_hull import HullConfig, LocalisationError, PosedMask, VisualHull, visual_hull

log = logging.getLogger(__name__)

MODES = ("image", "twin", "fused")

__all__ = ["MODES", "LocalisationError", "PosedMask", "VisualHull", "localise", "localise_image_only",
           "localise_twin", "localise_fused", "propose_second_view", "pivot_from_mask"]


def localise_image_only(name: str, views: Sequence[PosedMask], config: HullConfig | None = None,
                        bounds_world: tuple[np.ndarray, np.ndarray] | None = None) -> LocalisedStructure:
    """The visual hull's structure; `confidence` = silhouette consistency x view-angle factor."""
    return visual_hull(views, config, bounds_world).structure(name)


def localise_twin(prior: TwinPrior, name: str, confidence: float = 0.5) -> LocalisedStructure:
    return prior.localise(name, confidence)


def localise_fused(prior: TwinPrior, name: str, views: Sequence[PosedMask],
                   config: RegistrationConfig | None = None,
                   other_structures: Mapping[str, Sequence[PosedMask]] | None = None,
                   ) -> tuple[LocalisedStructure, RegistrationResult]:
    """Re-register the twin to the masks of `name` (plus any `other_structures` seen in the same
    images: one rigid correction explains them all), then read `name` out of the corrected
    twin. `confidence` = the worst view's silhouette Dice after alignment."""
    observations = {name: list(views), **dict(other_structures or {})}
    result = register_to_masks(prior, observations, config)
    corrected = prior.with_registration(result.world_from_twin)
    structure = corrected.localise(name, result.confidence)
    details = {**structure.details, "registration": result}
    return LocalisedStructure(structure.name, "fused", structure.centroid_world, structure.box,
                              structure.points_world, structure.point_spacing_mm, structure.confidence,
                              details), result


def localise(mode: str, name: str, views: Sequence[PosedMask] = (), prior: TwinPrior | None = None,
             hull_config: HullConfig | None = None,
             registration_config: RegistrationConfig | None = None) -> LocalisedStructure:
    """Dispatch on `mode` ("image", "twin" or "fused")."""
    if mode == "image":
        return localise_image_only(name, views, hull_config)
    if prior is None and mode in ("twin", "fused"):
        raise PlanningInputError(f"localisation mode {mode!r} needs the twin prior")
    if mode == "twin":
        return localise_twin(prior, name)
    if mode == "fused":
        if not views:
            raise LocalisationError("fused localisation needs at least one posed mask")
        return localise_fused(prior, name, views, registration_config)[0]
    raise PlanningInputError(f"unknown localisation mode {mode!r}; use one of {MODES}")
