"""FluoroSAMPredictor.predict against random bad prompts (an untrained registry model holding a
small image): empty and huge text, points outside the image or NaN, odd labels and counts all
raise PromptError with the reason, never anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from fluorosam_ros.model.predictor import PromptError
from fluorosam_ros.reliability import REFUSED
from fluorosam_ros.reliability import fuzz


@pytest.fixture(scope="module")
def predictor():
    return fuzz.tiny_predictor()


@settings(max_examples=150)
@given(fuzz.bad_prompts())
def test_bad_prompts_raise_prompt_error(ledger, predictor, case):
    assert fuzz.check_prompt(ledger, predictor, case) == REFUSED, ledger.problems()


def test_the_refusals_say_why(predictor):
    height, width = fuzz.PROMPT_IMAGE_SHAPE
    with pytest.raises(PromptError, match="outside"):
        predictor.predict(points=[[width + 5.0, 1.0]], labels=[1])
    with pytest.raises(PromptError, match="limit"):
        predictor.predict(text="x" * 10_000)
    with pytest.raises(PromptError, match="empty"):
        predictor.predict(text=" \t ")
    assert predictor.predict(text="heart", points=[[1.0, 1.0]], labels=[1]).masks.shape[1:] == (height, width)
