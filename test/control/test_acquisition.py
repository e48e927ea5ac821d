"""The AcquireView loop in-process (control/acquisition.py) over the rendered twin: the image
registration stage, the masks' trust, and the collimation margin that follows from them."""

import numpy as np
import pytest

from fluorosam_ros.control.acquisition import AcquireRequest, ViewAcquisition
from fluorosam_ros.control.config import PlannerConfig
from fluorosam_ros.control.image_registration import ImageRegistrationConfig
from fluorosam_ros.control.plan import mask_centring
from fluorosam_ros.control.ports import RenderedCArm, TruthSegmenter
from fluorosam_ros.control.twin_prior import RegistrationErrorConfig, TwinPrior, rigid_difference
from fluorosam_ros.geometry.carm import CArmGeometry, CArmState
from fluorosam_ros.twin.detector import DetectorModel


class NoMaskSegmenter:
    """A segmenter that never finds anything (the model's absent head firing every time)."""

    def segment(self, frame, target, hint_xy=None):
        return None


class WrongMaskSegmenter:
    """A confident mask in the wrong place: the image's top-left quarter."""

    def segment(self, frame, target, hint_xy=None):
        mask = np.zeros(frame.image.shape[:2], dtype=bool)
        mask[: mask.shape[0] // 4, : mask.shape[1] // 4] = True
        return mask


class SpillOnCollimatedSegmenter:
    """True masks, until the field is collimated: then the mask also spills over the lower
    right quarter of the field (as a model can on a shuttered frame it saw little of in training)."""

    def __init__(self, carm) -> None:
        self.truth = TruthSegmenter(carm)
        self.spilled = 0

    def segment(self, frame, target, hint_xy=None):
        mask = self.truth.segment(frame, target, hint_xy)
        state = frame.state
        if mask is None or not state.collimation.enabled:
            return mask
        field = state.collimation.field_mask(state.config.sensor_width_px, state.config.sensor_height_px)
        rows, cols = np.nonzero(field.any(axis=1))[0], np.nonzero(field.any(axis=0))[0]
        spill = field.copy()
        spill[: (rows[0] + rows[-1]) // 2] = False
        spill[:, : (cols[0] + cols[-1]) // 2] = False
        self.spilled += 1
        return mask | spill


def _run(default_patient, default_renderer, patient_carm, segmenter_kind, config: PlannerConfig,
         name="kidney_left", view="lateral", seed=7):
    geometry = CArmGeometry(patient_carm)
    centroid = default_patient.structure_centroid_world(name)
    start = CArmState(patient_carm, geometry.pose_through_point(centroid + [40.0, 0.0, 30.0], 0.0, 0.0))
    carm = RenderedCArm(default_renderer, DetectorModel(), start, np.random.default_rng(seed))
    segmenter = {"truth": lambda: TruthSegmenter(carm), "none": NoMaskSegmenter, "wrong": WrongMaskSegmenter,
                 "spill": lambda: SpillOnCollimatedSegmenter(carm)}[segmenter_kind]()
    prior = TwinPrior.with_injected_error(default_patient, RegistrationErrorConfig(15.0, 5.0, seed), name)
    loop = ViewAcquisition(carm, segmenter, config, prior)
    outcome = loop.run(AcquireRequest(name, view))
    translation, rotation = rigid_difference(loop.prior.world_from_twin, np.eye(4), centroid)
    return outcome, translation, rotation, loop


@pytest.mark.parametrize("segmenter", ["none", "wrong"])
def test_the_images_register_the_twin_when_the_masks_are_useless(default_patient, default_renderer, patient_carm,
                                                                 segmenter, record_figure):
    outcome, translation, rotation, _ = _run(default_patient, default_renderer, patient_carm, segmenter,
                                             PlannerConfig())
    record_figure(f"AcquireView kidney_left lateral, masks '{segmenter}': twin error 15.0 mm / 5.0 deg -> "
                  f"{translation:.1f} mm / {rotation:.1f} deg; {outcome.summary()}")
    assert outcome.success, outcome.message
    assert "registered to the images" in outcome.message
    assert translation < 3.0 and rotation < 2.5
    assert outcome.coverage >= 0.95


def test_margin_follows_whether_the_localisation_was_checked(default_patient, default_renderer, patient_carm):
    registered, *_ = _run(default_patient, default_renderer, patient_carm, "none", PlannerConfig())
    unchecked_config = PlannerConfig(image_registration=ImageRegistrationConfig(enabled=False))
    unchecked, translation, _, loop = _run(default_patient, default_renderer, patient_carm, "none", unchecked_config)
    assert loop.image_registrar is None
    assert translation == pytest.approx(15.0, abs=0.5)  # nothing could correct the twin
    policy = unchecked_config.collimation
    assert registered.plan.collimation.margin_px < unchecked.plan.collimation.margin_px
    ratio = unchecked.plan.collimation.margin_px / registered.plan.collimation.margin_px
    assert ratio == pytest.approx(policy.unregistered_margin_mm / policy.margin_mm, rel=0.35)


def test_ground_truth_masks_are_trusted_after_image_registration(default_patient, default_renderer, patient_carm):
    outcome, _, _, loop = _run(default_patient, default_renderer, patient_carm, "truth", PlannerConfig(),
                               name="vertebrae_L1", view="ap", seed=3)
    assert outcome.success, outcome.message
    assert outcome.message == "shown and collimated"  # judged on the mask: it matched the registered twin
    # every frame looked along about the same (AP) direction: the error across it is corrected,
    # the depth along it is not observable and stays (harmless for this view)
    centroid = default_patient.structure_centroid_world("vertebrae_L1")
    offset = (loop.prior.world_from_twin @ np.r_[centroid, 1.0])[:3] - centroid
    ray = outcome.final_state.camera().principal_ray_world
    assert np.linalg.norm(offset - (offset @ ray) * ray) < 3.0


def test_a_last_mask_that_disagrees_with_the_localisation_does_not_judge_the_view(default_patient, default_renderer,
                                                                                  patient_carm):
    """The first masks agree with the registered twin, the collimated frame's does not: the
    view is judged (and found centred) from the localisation, not from the spilled mask."""
    outcome, _, _, loop = _run(default_patient, default_renderer, patient_carm, "spill", PlannerConfig(),
                               name="vertebrae_L1", view="ap", seed=3)
    assert loop.segmenter.spilled >= 1
    assert outcome.success, outcome.message
    assert "did not match the twin" in outcome.message
    # judged on the localisation's centring, not on the spilled mask's (much further off)
    spilled_fraction = mask_centring(outcome.final_mask, outcome.final_state)[1]
    assert outcome.centring_fraction < spilled_fraction / 2, (outcome.centring_fraction, spilled_fraction)
