"""The dense text grounding: shapes and validation, a zero start that leaves trained weights
unchanged, that it learns where a text points, and that it reaches the decoder and predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorosam_ros.model.build import CheckpointError, build_model, load_checkpoint, save_checkpoint
from fluorosam_ros.model.fluorosam import CONTEXT_PREFIXES, GROUNDING_PREFIXES
from fluorosam_ros.model.predictor import FluoroSAMPredictor
from fluorosam_ros.model.prompt_encoder import PromptEncoder
from fluorosam_ros.model.text_grounding import TextGrounding
from fluorosam_ros.train.losses import grounding_loss

from ddp_worker import HashingSentenceEncoder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder()).eval()


def test_one_cached_image_serves_every_prompt_and_bad_shapes_are_refused():
    grounding = TextGrounding(embed_dim=32, text_dim=12, hidden_dim=16, query_dim=8)
    image, pe = torch.randn(1, 32, 6, 5), torch.randn(1, 32, 6, 5)
    assert grounding(image, pe, torch.randn(4, 12)).shape == (4, 6, 5)
    assert grounding(image.expand(4, -1, -1, -1), pe, torch.randn(4, 12)).shape == (4, 6, 5)
    with pytest.raises(ValueError, match="sentence embeddings"):
        grounding(image, pe, torch.randn(4, 11))
    with pytest.raises(ValueError, match="image embeddings for"):
        grounding(torch.randn(3, 32, 6, 5), pe, torch.randn(4, 12))


def test_a_fresh_grounding_changes_nothing_until_trained(model):
    """The dense embedding starts at zero, so weights from before the grounding keep their answers."""
    embedding = torch.randn(1, 256, 16, 16)
    tokens = model.encode_text(texts=["left lung", "heart"])
    logits = model.ground_text(embedding, tokens)
    assert logits.shape == (2, 16, 16)
    with torch.no_grad():
        plain = model.decode(embedding, None, tokens.tokens)
        grounded = model.decode(embedding, None, tokens.tokens, grounding_logits=logits)
    assert torch.equal(plain.masks, grounded.masks)


def test_the_grounding_reaches_the_masks_once_its_embedding_is_nonzero(model):
    embedding = torch.randn(1, 256, 16, 16)
    tokens = model.encode_text(texts=["left lung"])
    left = torch.full((1, 16, 16), -8.0)
    left[..., :8] = 8.0
    with torch.no_grad():
        model.prompt_encoder.grounding_embed.weight.normal_()
        try:
            a = model.decode(embedding, None, tokens.tokens, grounding_logits=left)
            b = model.decode(embedding, None, tokens.tokens, grounding_logits=-left)
        finally:
            model.prompt_encoder.grounding_embed.weight.zero_()
    assert not torch.allclose(a.masks, b.masks)


@pytest.mark.parametrize("context", [False, True])
def test_it_learns_where_each_text_points(context):
    """Two texts, one pointing at the left half of a random image and one at the right: after
    a short training the map puts each where it belongs (a linear task: it must be solved)."""
    torch.manual_seed(1)
    grounding = TextGrounding(embed_dim=32, text_dim=12, hidden_dim=32, query_dim=16, context=context)
    image, pe = torch.randn(1, 32, 8, 8), torch.zeros(1, 32, 8, 8)
    texts = torch.randn(2, 12)
    target = torch.zeros(2, 32, 32, dtype=torch.bool)
    target[0, :, :16] = True
    target[1, :, 16:] = True
    optimizer = torch.optim.Adam(grounding.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = grounding_loss(grounding(image, pe, texts), target)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        where = torch.nn.functional.interpolate(grounding(image, pe, texts)[:, None], size=(32, 32),
                                                mode="bilinear", align_corners=False)[:, 0] > 0
    iou = (where & target).sum((1, 2)).float() / (where | target).sum((1, 2)).float()
    assert float(loss.detach()) < 0.5 * first
    assert (iou > 0.85).all(), iou


def test_grounding_loss_on_hand_made_masks():
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:6] = True
    right = torch.where(target, 10.0, -10.0).float()
    assert float(grounding_loss(right, target)) < 0.01
    assert float(grounding_loss(-right, target)) > 5.0
    empty = torch.zeros(1, 8, 8, dtype=torch.bool)       # an absent prompt: the map should stay empty
    assert float(grounding_loss(torch.full((1, 8, 8), -10.0), empty)) < 0.01
    assert float(grounding_loss(torch.full((1, 8, 8), 10.0), empty)) > 5.0


def test_a_prompt_encoder_without_dense_text_refuses_a_map():
    encoder = PromptEncoder(32, (4, 4), (64, 64))
    with pytest.raises(ValueError, match="without dense_text"):
        encoder(None, torch.randn(1, 1, 32), torch.zeros(1, 4, 4))
    dense = PromptEncoder(32, (4, 4), (64, 64), dense_text=True)
    with pytest.raises(ValueError, match="grounding logits must be"):
        dense(None, torch.randn(1, 1, 32), torch.zeros(2, 4, 4))


def _saved_without(model, path, prefixes: tuple[str, ...]) -> tuple[dict, dict]:
    """Save `model` to `path` as an older checkpoint without the parameters under `prefixes`
    (and without a digest); returns that payload and the full state."""
    save_checkpoint(model, path, "fluorosam_cpu_small")
    payload = torch.load(path, weights_only=True)
    payload.pop("weights_sha256")
    state = payload["model"]
    payload["model"] = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    torch.save(payload, path)
    return payload, state


def test_weights_from_before_the_grounding_load_with_it_off(model, tmp_path):
    """An old checkpoint (none of the grounding's parameters) answers as before; one missing only
    part of them is damaged and refused."""
    path = tmp_path / "old.pt"
    payload, state = _saved_without(model, path, GROUNDING_PREFIXES)
    fresh = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder())
    with torch.no_grad():
        fresh.prompt_encoder.grounding_embed.weight.normal_()   # as if it had been trained
    load_checkpoint(fresh, path)
    assert not fresh.prompt_encoder.grounding_embed.weight.any()
    embedding = torch.randn(1, 256, 16, 16)
    tokens = fresh.encode_text(texts=["heart"])
    with torch.no_grad():
        plain = fresh.decode(embedding, None, tokens.tokens)
        grounded = fresh.decode(embedding, None, tokens.tokens, grounding_logits=fresh.ground_text(embedding, tokens))
    assert torch.equal(plain.masks, grounded.masks)
    payload["model"] = {k: v for k, v in state.items() if k != "text_grounding.bias"}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(fresh, path)


def test_the_paper_configuration_has_no_grounding():
    from fluorosam_ros.model.build import CONFIGS

    assert not CONFIGS["fluorosam_swin_l"].text_grounding and CONFIGS["fluorosam_cpu_small"].text_grounding


def test_the_predictor_grounds_text_prompts_only(model, monkeypatch):
    predictor = FluoroSAMPredictor(model)
    predictor.set_image(np.random.default_rng(0).random((64, 80)).astype(np.float32))
    calls = []
    original = model.ground_text
    monkeypatch.setattr(model, "ground_text", lambda *a: calls.append(1) or original(*a))
    predictor.predict(text="heart")
    predictor.predict(points=np.array([[10.0, 20.0]]), labels=np.array([1]))
    predictor.predict(text="heart", points=np.array([[10.0, 20.0]]), labels=np.array([1]))
    assert len(calls) == 2


def test_a_text_only_answer_comes_from_the_grounding_map(model, monkeypatch):
    """The decoder finds nothing, the map points at the top-left quarter: text alone answers with
    the map (the decoder's masks follow it); with a click (the user says where) and with the
    option off the decoder's answer stands."""
    from fluorosam_ros.model.mask_decoder import DecoderOutput

    def empty_decode(embedding, points, tokens, multimask_output=True, grounding_logits=None, mask_logits=None):
        batch = tokens.shape[0] if tokens is not None else points[0].shape[0]
        return DecoderOutput(torch.full((batch, 3, 64, 64), -5.0), torch.zeros(batch, 3), torch.full((batch,), -5.0))

    def top_left(embedding, tokens):
        logits = torch.full((1, 16, 16), -5.0)
        logits[:, :8, :8] = 5.0
        return logits

    monkeypatch.setattr(model, "decode", empty_decode)
    monkeypatch.setattr(model, "ground_text", top_left)
    image = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    predictor = FluoroSAMPredictor(model)
    predictor.set_image(image)
    answer = predictor.predict(text="heart")
    assert answer.from_grounding and not answer.absent
    rows, cols = np.nonzero(answer.best_mask)
    assert rows.max() < 70 and cols.max() < 70 and answer.best_mask.sum() > 0.2 * 64 * 64
    assert answer.masks.shape == (3, 128, 128) and not answer.masks[1:].any() and answer.iou_scores.shape == (3,)
    clicked = predictor.predict(text="heart", points=np.array([[100.0, 100.0]]), labels=np.array([1]))
    assert not clicked.from_grounding and not clicked.best_mask.any()
    strict = FluoroSAMPredictor(model, text_only_from_grounding=False)
    strict.set_image(image)
    assert not strict.predict(text="heart").best_mask.any()


def test_the_map_becomes_the_mask_at_its_threshold(model, monkeypatch):
    """A map of -0.5 logits everywhere but -5 in the top-left quarter: at a threshold of -1 all
    but that quarter is the answer; at 0 (the default) nothing is, and the decoder answers."""
    from fluorosam_ros.model.mask_decoder import DecoderOutput

    def empty_decode(embedding, points, tokens, multimask_output=True, grounding_logits=None, mask_logits=None):
        return DecoderOutput(torch.full((1, 3, 64, 64), -5.0), torch.zeros(1, 3), torch.full((1,), -5.0))

    def faint(embedding, tokens):
        logits = torch.full((1, 16, 16), -0.5)
        logits[:, :8, :8] = -5.0
        return logits

    monkeypatch.setattr(model, "decode", empty_decode)
    monkeypatch.setattr(model, "ground_text", faint)
    monkeypatch.setattr(model, "refine_grounding", lambda coarse, pixels, tokens: None)
    image = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    answers = {}
    for threshold in (-1.0, 0.0):
        predictor = FluoroSAMPredictor(model, text_map_threshold_logit=threshold) if threshold else \
            FluoroSAMPredictor(model)
        predictor.set_image(image)
        answers[threshold] = predictor.predict(text="heart")
    low = answers[-1.0]
    assert low.from_grounding and low.best_mask[100:, 100:].all() and not low.best_mask[:50, :50].any()
    assert not answers[0.0].from_grounding and not answers[0.0].best_mask.any()
    with pytest.raises(ValueError, match="finite"):
        FluoroSAMPredictor(model, text_map_threshold_logit=float("nan"))


def test_build_model_builds_the_grounding_a_checkpoint_has(model, tmp_path):
    with_grounding = tmp_path / "with.pt"
    save_checkpoint(model, with_grounding, "fluorosam_cpu_small")
    plain = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(),
                        overrides={"text_grounding": False})
    without = tmp_path / "without.pt"
    save_checkpoint(plain, without, "fluorosam_cpu_small")
    assert build_model("fluorosam_cpu_small", with_grounding, HashingSentenceEncoder()).text_grounding is not None
    assert build_model("fluorosam_cpu_small", without, HashingSentenceEncoder()).text_grounding is None


def _pair(seed: int = 0) -> tuple[TextGrounding, TextGrounding]:
    """A grounding with the context branch and one without, sharing every other weight."""
    torch.manual_seed(seed)
    with_context = TextGrounding(embed_dim=32, text_dim=12, hidden_dim=16, query_dim=8, context=True)
    plain = TextGrounding(embed_dim=32, text_dim=12, hidden_dim=16, query_dim=8)
    plain.load_state_dict({k: v for k, v in with_context.state_dict().items()
                           if not k.startswith(("context.", "context_film."))})
    return with_context, plain


def test_a_fresh_context_branch_adds_nothing():
    with_context, plain = _pair()
    image, pe, texts = torch.randn(1, 32, 6, 6), torch.randn(1, 32, 6, 6), torch.randn(3, 12)
    assert with_context.has_context and not plain.has_context
    assert torch.equal(with_context(image, pe, texts), plain(image, pe, texts))


def test_the_context_branch_sees_the_neighbourhood():
    """Changing one cell of the image moves only that cell's logit without the branch, and the
    cells around it (3x3, then dilated 3x3: up to 3 cells away) with it."""
    with_context, plain = _pair(1)
    with torch.no_grad():
        with_context.context[-1].weight.normal_()
    image, pe, texts = torch.randn(1, 32, 12, 12), torch.zeros(1, 32, 12, 12), torch.randn(1, 12)
    changed = image.clone()
    changed[0, :, 6, 6] += 5.0
    with torch.no_grad():
        moved_plain = (plain(changed, pe, texts) - plain(image, pe, texts)).abs()[0] > 1e-6
        moved_context = (with_context(changed, pe, texts) - with_context(image, pe, texts)).abs()[0] > 1e-6
    assert moved_plain.sum() == 1 and moved_plain[6, 6]
    assert moved_context[6, 3] and moved_context[9, 6] and moved_context[4, 8]
    assert not moved_context[6, 10] and not moved_context[1, 6]


def test_weights_from_before_the_context_branch_load_with_it_adding_nothing(model, tmp_path):
    """Run-6 weights (a grounding without the branch) are built without it by build_model and,
    loaded into a model with it (training with --init-from), answer as before; a checkpoint
    missing only part of the branch is damaged and refused."""
    assert model.text_grounding.has_context
    path = tmp_path / "no_context.pt"
    payload, state = _saved_without(model, path, CONTEXT_PREFIXES)
    assert not build_model("fluorosam_cpu_small", path, HashingSentenceEncoder()).text_grounding.has_context
    assert build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder()).text_grounding.has_context
    fresh = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder())
    with torch.no_grad():
        fresh.text_grounding.context[-1].weight.normal_()   # as if it had been trained
    load_checkpoint(fresh, path)
    reference = build_model("fluorosam_cpu_small", path, HashingSentenceEncoder())
    embedding = torch.randn(1, 256, 16, 16)
    with torch.no_grad():
        tokens = fresh.encode_text(texts=["heart", "left lung"])
        assert torch.allclose(fresh.ground_text(embedding, tokens), reference.ground_text(embedding, tokens))
    payload["model"] = {k: v for k, v in state.items() if k != "text_grounding.context_film.bias"}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(fresh, path)
