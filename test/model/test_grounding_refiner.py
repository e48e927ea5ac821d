"""The grounding refiner: shapes and validation, a zero start that answers with the coarse map,
that it learns a boundary the coarse grid cannot draw, and its place in the model and predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fluorosam_ros.model.build import CONFIGS, build_model, load_checkpoint, save_checkpoint
from fluorosam_ros.model.fluorosam import REFINER_PREFIXES
from fluorosam_ros.model.grounding_refiner import GroundingRefiner
from fluorosam_ros.model.predictor import FluoroSAMPredictor
from fluorosam_ros.train.losses import grounding_loss

from ddp_worker import HashingSentenceEncoder


WITH_REFINER = {"grounding_refiner": True, "mask_input": True}


def _skips(batch: int = 1, size: int = 16) -> dict[int, torch.Tensor]:
    return {8: torch.randn(batch, 40, 2 * size, 2 * size), 4: torch.randn(batch, 24, 4 * size, 4 * size)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(),
                       pretrained_backbone=False, overrides=WITH_REFINER).eval()


def test_one_cached_image_serves_every_prompt_and_bad_inputs_are_refused():
    refiner = GroundingRefiner(embed_dim=32, text_dim=12, pixel_dim=8, head_dim=8)
    pixels = refiner.pixel_features(torch.randn(1, 32, 4, 4), _skips(size=4))
    assert pixels.shape == (1, 8, 16, 16)
    assert refiner(torch.randn(3, 4, 4), pixels, torch.randn(3, 12)).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="sentence embeddings"):
        refiner(torch.randn(3, 4, 4), pixels, torch.randn(3, 11))
    with pytest.raises(ValueError, match="coarse maps"):
        refiner(torch.randn(2, 4, 4), pixels, torch.randn(3, 12))
    with pytest.raises(ValueError, match="stride"):
        refiner.pixel_features(torch.randn(1, 32, 4, 4), {8: torch.randn(1, 40, 8, 8)})
    with pytest.raises(ValueError, match="stride-8 and stride-4"):
        GroundingRefiner(skip_channels={16: 112, 8: 40})


def test_a_fresh_refiner_answers_with_the_coarse_map_upsampled():
    refiner = GroundingRefiner(embed_dim=32, text_dim=12, pixel_dim=8, head_dim=8)
    coarse = torch.randn(2, 4, 4)
    pixels = refiner.pixel_features(torch.randn(1, 32, 4, 4), _skips(size=4))
    expected = F.interpolate(coarse[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(refiner(coarse, pixels, torch.randn(2, 12)), expected, atol=1e-6)


def test_it_learns_an_edge_inside_a_coarse_cell():
    """The target's boundary runs through the middle of the coarse cells, where the upsampled
    coarse map can only blur it; the finest skip map marks the boundary pixel by pixel. After
    a short training the refined map draws it: IoU well above the coarse map's."""
    torch.manual_seed(2)
    refiner = GroundingRefiner(embed_dim=16, text_dim=12, pixel_dim=16, head_dim=16)
    target = torch.zeros(1, 32, 32, dtype=torch.bool)
    target[:, :, :13] = True                      # 13 px: not a multiple of the 8-px coarse cells
    skips = {8: torch.zeros(1, 40, 16, 16), 4: torch.zeros(1, 24, 32, 32)}
    skips[4][:, 0] = target.float() * 2 - 1       # the edge, visible at full resolution only
    embedding = torch.zeros(1, 16, 4, 4)
    coarse = torch.full((1, 4, 4), -2.0)
    coarse[:, :, :2] = 2.0                        # the coarse map's best guess: 16 px wide
    text = torch.randn(1, 12)
    optimizer = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    for _ in range(120):
        loss = grounding_loss(refiner(coarse, refiner.pixel_features(embedding, skips), text), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def iou(logits: torch.Tensor) -> float:
        where = logits > 0
        return float((where & target).sum() / (where | target).sum())

    with torch.no_grad():
        refined = refiner(coarse, refiner.pixel_features(embedding, skips), text)
    upsampled = F.interpolate(coarse[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    assert iou(refined) > 0.95 > iou(upsampled) + 0.1, (iou(refined), iou(upsampled))


def test_the_registry_builds_them_on_request_and_the_bundled_weights_have_them():
    # training asks for them (--grounding-refiner --mask-prompts); a checkpoint brings its own
    assert not CONFIGS["fluorosam_cpu_small"].grounding_refiner and not CONFIGS["fluorosam_swin_l"].grounding_refiner
    assert not CONFIGS["fluorosam_cpu_small"].mask_input
    from fluorosam_ros.model.build import bundled_checkpoint

    bundled = build_model("fluorosam_cpu_small", bundled_checkpoint(), sentence_encoder=HashingSentenceEncoder())
    assert bundled.grounding_refiner is not None and bundled.takes_mask_prompts
    # trained, not the silent start
    assert bundled.grounding_refiner.head[-1].weight.abs().sum() > 0
    assert bundled.prompt_encoder.mask_downscaling[-1].weight.abs().sum() > 0


def test_weights_from_before_the_refiner_load_with_it_adding_nothing(model, tmp_path):
    path = tmp_path / "old.pt"
    save_checkpoint(model, path, "fluorosam_cpu_small")
    payload = torch.load(path, weights_only=True)
    payload.pop("weights_sha256")
    payload["model"] = {k: v for k, v in payload["model"].items() if not k.startswith(REFINER_PREFIXES)}
    torch.save(payload, path)
    # built from the registry (as the trainer does): the refiner is there and starts silent
    fresh = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(), pretrained_backbone=False,
                        overrides=WITH_REFINER)
    with torch.no_grad():
        fresh.grounding_refiner.head[-1].weight.normal_()   # as if it had been trained
    load_checkpoint(fresh, path)
    assert not fresh.grounding_refiner.head[-1].weight.any()
    # built from the checkpoint: as it was made, without a refiner
    assert build_model("fluorosam_cpu_small", path, sentence_encoder=HashingSentenceEncoder()).grounding_refiner is None


def test_the_predictor_caches_the_pixel_features_and_answers_text_with_the_refined_map(model, monkeypatch):
    predictor = FluoroSAMPredictor(model)
    predictor.set_image(np.random.default_rng(0).random((96, 80)).astype(np.float32))
    assert predictor._pixel_features.shape == (1, model.grounding_refiner.pixel_dim, 64, 64)

    def left_half(coarse, pixels, text):
        logits = torch.full((coarse.shape[0], 64, 64), -5.0)
        logits[..., :30] = 5.0
        return logits

    monkeypatch.setattr(model, "refine_grounding", left_half)
    answer = predictor.predict(text="heart")
    assert answer.from_grounding
    columns = np.nonzero(answer.best_mask.any(axis=0))[0]
    # 30 of 64 cells of the padded 256 input; the 96x80 image fills 80/96 of its width
    assert columns.max() == pytest.approx(30 / 64 * 96, abs=2)
    predictor.reset_image()
    assert predictor._pixel_features is None


def test_a_mask_prompt_must_fit_the_decoder_grid_and_starts_adding_nothing(model):
    embedding = torch.randn(1, 256, 16, 16)
    tokens = model.encode_text(texts=["left lung", "heart"])
    with torch.no_grad():
        plain = model.decode(embedding, None, tokens.tokens)
        prompted = model.decode(embedding, None, tokens.tokens, mask_logits=torch.randn(2, 64, 64))
    assert torch.equal(plain.masks, prompted.masks)      # the downscaling's last layer starts at zero
    with pytest.raises(ValueError, match="mask logits must be"):
        model.decode(embedding, None, tokens.tokens, mask_logits=torch.randn(2, 16, 16))
    from fluorosam_ros.model.prompt_encoder import PromptEncoder

    with pytest.raises(ValueError, match="without mask_input"):
        PromptEncoder(32, (4, 4), (64, 64))(None, torch.randn(1, 1, 32), mask_logits=torch.zeros(1, 16, 16))


def test_the_predictor_feeds_an_earlier_answer_back_and_checks_it(model, monkeypatch):
    predictor = FluoroSAMPredictor(model)
    predictor.set_image(np.random.default_rng(1).random((80, 80)).astype(np.float32))
    seen = []
    original = model.decode
    monkeypatch.setattr(model, "decode", lambda *a, **k: seen.append(k.get("mask_logits")) or original(*a, **k))
    first = predictor.predict(text="heart")
    assert first.low_res_logits.shape == (3, 64, 64)
    # a text prompt's own mask prompt is its refined map; the map is also the first low-res answer
    assert seen[-1] is not None and first.from_grounding
    assert np.allclose(first.low_res_logits[0], seen[-1][0].numpy(), atol=1e-5)
    predictor.predict(text="heart", points=np.array([[40.0, 40.0]]), labels=np.array([1]),
                      mask_input=first.low_res_logits[0])
    assert np.allclose(seen[-1][0].numpy(), first.low_res_logits[0])
    predictor.predict(points=np.array([[40.0, 40.0]]), labels=np.array([1]))
    assert seen[-1] is None                               # no text, no map: no mask prompt
    from fluorosam_ros.model.predictor import PromptError

    with pytest.raises(PromptError, match="low-resolution logits"):
        predictor.predict(text="heart", mask_input=np.zeros((32, 32)))
    with pytest.raises(PromptError, match="NaN"):
        predictor.predict(text="heart", mask_input=np.full((64, 64), np.nan))
    old = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(), pretrained_backbone=False)
    old_predictor = FluoroSAMPredictor(old)
    old_predictor.set_image(np.zeros((40, 40), np.float32))
    with pytest.raises(PromptError, match="no mask prompt"):
        old_predictor.predict(text="heart", mask_input=np.zeros((64, 64)))
