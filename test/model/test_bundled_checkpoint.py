"""The bundled checkpoint (weights/fluorosam_cpu_small.pt) on held-out rendered views.

The floors come from the evaluation in weights/MODEL_CARD.md, set a margin below what the
model reaches there, so that a broken checkpoint, preprocessing or decoder fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.data.anatomy import PatientAnatomy
from fluorosam_ros.data.text import PromptGenerator
from fluorosam_ros.data.views import ViewSampler, ViewSamplerConfig, standard_families
from fluorosam_ros.evaluation.metrics import dice
from fluorosam_ros.geometry.carm import CArmState
from fluorosam_ros.model.build import build_model, bundled_checkpoint
from fluorosam_ros.model.predictor import FluoroSAMPredictor
from fluorosam_ros.twin.detector import DetectorModel
from fluorosam_ros.twin.patient import Patient
from fluorosam_ros.twin.renderer import CpuRenderer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SIZE = 256
HELD_OUT_FAMILY = "spine_lateral_thoracic"   # never in the training split
STRUCTURES = ["heart", "aorta", "vertebrae_T8", "lung_lower_lobe_right", "lung_upper_lobe_left", "esophagus"]
TEXT_DICE_FLOOR = 0.30        # measured 0.437 (run 7, session 8; 0.195 with run 6, 0.141 with run 5); see MODEL_CARD
EIGHT_POINT_DICE_FLOOR = 0.75  # measured 0.788 (run 7; 0.823 with run 6, 0.797 with run 5)


@pytest.fixture(scope="module")
def held_out_view():
    patient = Patient.default()
    sampler = ViewSampler(PatientAnatomy(patient), ViewSamplerConfig(image_size_px=SIZE))
    family = next(f for f in standard_families() if f.name == HELD_OUT_FAMILY)
    view = sampler.standard(np.random.default_rng(3), family)
    result = CpuRenderer(patient).render(CArmState(view.config, view.pose), structures=STRUCTURES)
    detector = DetectorModel()
    display = detector.display(detector.intensity(result.line_integral, result.exposed), result.exposed)
    masks = {name: result.mask(name) for name in STRUCTURES if result.mask(name).sum() >= 100}
    assert len(masks) >= 4, f"the view shows too few of {STRUCTURES}"
    return display, result.exposed, masks


@pytest.fixture(scope="module")
def predictor():
    return FluoroSAMPredictor(build_model("fluorosam_cpu_small", bundled_checkpoint()))


def test_text_prompts_segment_a_held_out_view(held_out_view, predictor, record_figure):
    display, exposed, masks = held_out_view
    predictor.set_image(display, exposed)
    prompts = PromptGenerator()
    scores = {name: dice(predictor.predict(text=prompts.canonical(name)).best_mask, mask) for name, mask in masks.items()}
    mean = float(np.mean(list(scores.values())))
    record_figure(f"bundled checkpoint, held-out {HELD_OUT_FAMILY} view, text only: mean Dice {mean:.3f} "
                  + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    assert mean >= TEXT_DICE_FLOOR


def test_the_prompt_reader_restores_wrapped_phrasings(held_out_view, predictor, record_figure):
    """A request wrapped in words the model never saw scores far below its canonical name; read
    first, it is the canonical name."""
    from fluorosam_ros.language.prompt_reader import PromptReader

    display, exposed, masks = held_out_view
    reading = FluoroSAMPredictor(predictor.model, prompt_reader=PromptReader())
    reading.set_image(display, exposed)
    predictor.set_image(display, exposed)
    prompts = PromptGenerator()
    as_written, read = [], []
    for name, mask in masks.items():
        wrapped = f"I need a mask of the {prompts.canonical(name)} in this image"
        as_written.append(dice(predictor.predict(text=wrapped).best_mask, mask))
        answer = reading.predict(text=wrapped)
        assert answer.prompt_text == prompts.canonical(name)
        read.append(dice(answer.best_mask, mask))
    record_figure(f"bundled checkpoint, held-out view, 'I need a mask of the ... in this image': mean Dice "
                  f"{np.mean(as_written):.3f} as written, {np.mean(read):.3f} read")
    assert np.mean(read) >= TEXT_DICE_FLOOR and np.mean(read) > np.mean(as_written)


def test_clicks_improve_the_mask(held_out_view, predictor, record_figure):
    from fluorosam_ros.train.prompts import next_point

    display, exposed, masks = held_out_view
    predictor.set_image(display, exposed)
    prompts, rng = PromptGenerator(), np.random.default_rng(0)
    text_scores, clicked_scores = [], []
    for name, target in masks.items():
        prediction = predictor.predict(text=prompts.canonical(name))
        text_scores.append(dice(prediction.best_mask, target))
        points, labels = np.zeros((0, 2)), np.zeros(0, dtype=int)
        for _ in range(8):
            click = next_point(prediction.best_mask, target, rng)
            if click is None:
                break
            points, labels = np.vstack([points, click[0][None]]), np.append(labels, click[1])
            prediction = predictor.predict(text=prompts.canonical(name), points=points, labels=labels)
        clicked_scores.append(dice(prediction.best_mask, target))
    record_figure(f"bundled checkpoint, held-out view: mean Dice text {np.mean(text_scores):.3f} -> "
                  f"text + 8 clicks {np.mean(clicked_scores):.3f}")
    assert np.mean(clicked_scores) >= EIGHT_POINT_DICE_FLOOR
    assert np.mean(clicked_scores) > np.mean(text_scores)
