"""The assembled model: registry, checkpoints (good and corrupt), and the predictor's contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorosam_ros.model.build import CheckpointError, build_model, export_weights, load_checkpoint, save_checkpoint
from fluorosam_ros.model.predictor import FluoroSAMPredictor, PromptError

from ddp_worker import HashingSentenceEncoder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder())


@pytest.fixture
def predictor(model, rng):
    predictor = FluoroSAMPredictor(model)
    predictor.set_image(rng.random((300, 200)).astype(np.float32))
    return predictor


def test_predict_returns_masks_at_the_original_resolution(predictor):
    result = predictor.predict(text="left lung")
    assert result.masks.shape == (3, 300, 200) and result.masks.dtype == bool
    assert result.iou_scores.shape == (3,) and np.all(np.diff(result.iou_scores) <= 0)
    assert 0.0 <= result.absent_score <= 1.0
    assert result.low_res_logits.shape == (3, 64, 64)
    single = predictor.predict(text="left lung", points=np.array([[50.0, 60.0]]), labels=np.array([1]),
                               multimask_output=False)
    assert single.masks.shape == (1, 300, 200)
    points_only = predictor.predict(points=np.array([[10.0, 20.0], [150.0, 250.0]]), labels=np.array([1, 0]))
    # "absent" answers a text prompt; a click says the structure is there, whatever the head says
    assert not points_only.text_prompted and not points_only.absent
    strict = FluoroSAMPredictor(predictor.model, absent_threshold=0.0)   # every score counts as absent
    strict.set_image(np.random.default_rng(1).random((300, 200)).astype(np.float32))
    assert strict.predict(text="left lung").absent
    assert not strict.predict(points=np.array([[10.0, 20.0]]), labels=np.array([1])).absent
    assert points_only.masks.shape == (3, 300, 200)


def test_cached_embedding_is_reused(predictor, monkeypatch):
    calls = []
    original = predictor.model.embed_image
    monkeypatch.setattr(predictor.model, "embed_image", lambda x: calls.append(1) or original(x))
    predictor.predict(text="heart")
    predictor.predict(text="spine")
    assert calls == []


@pytest.mark.parametrize("kwargs, reason", [
    (dict(), "text prompt, points"),
    (dict(text=""), "empty"),
    (dict(text="x" * 10_000), "limit"),
    (dict(points=np.array([[500.0, 10.0]]), labels=np.array([1])), "outside"),
    (dict(points=np.array([[np.nan, 10.0]]), labels=np.array([1])), "NaN"),
    (dict(points=np.array([[5.0, 10.0]]), labels=np.array([2])), "labels"),
    (dict(points=np.array([[5.0, 10.0]])), "together"),
])
def test_bad_prompts_are_refused_with_a_reason(predictor, kwargs, reason):
    with pytest.raises(PromptError, match=reason):
        predictor.predict(**kwargs)


def test_bad_images_and_order_of_calls(model):
    predictor = FluoroSAMPredictor(model)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(text="heart")
    with pytest.raises(ValueError, match="finite"):
        predictor.set_image(np.full((64, 64), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        predictor.set_image(np.zeros((4, 64, 64, 2)))


def test_checkpoint_round_trip_and_corrupt_files(model, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(model, path, "fluorosam_cpu_small", {"step": 7})
    torch.manual_seed(1)
    other = build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder())
    payload = load_checkpoint(other, path, expected_name="fluorosam_cpu_small")
    assert payload["step"] == 7
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(other, truncated)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"image_encoder.neck.bogus": torch.zeros(3)}, "config": {"name": "fluorosam_cpu_small"}}, wrong)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(other, wrong)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(other, tmp_path / "missing.pt")


def test_flipped_bits_in_the_weights_are_detected(model, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(model, path, "fluorosam_cpu_small")
    payload = torch.load(path, weights_only=True)
    key = next(k for k, v in payload["model"].items() if v.is_floating_point() and v.numel() > 10)
    flipped = payload["model"][key].clone()
    flipped.view(torch.int32).view(-1)[3] ^= 1 << 4   # one mantissa bit: still a finite number
    payload["model"][key] = flipped
    torch.save(payload, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(model, tmp_path / "flipped.pt")
    # an exported (float16) copy carries its own digest, and loads
    exported = export_weights(path, tmp_path / "exported.pt")
    assert torch.load(exported, weights_only=True)["weights_sha256"]
    load_checkpoint(model, exported)


def test_registry_names_and_the_paper_configuration_needs_weights():
    with pytest.raises(ValueError, match="registered"):
        build_model("sam_vit_h")
    with pytest.raises(CheckpointError, match="no bundled weights"):
        build_model("fluorosam_swin_l")


def test_a_prompt_reader_chooses_the_text_the_model_sees(model, rng):
    image = rng.random((120, 100)).astype(np.float32)
    readings = {"I need a mask of the heart": "heart"}
    reading = FluoroSAMPredictor(model, prompt_reader=readings.get)   # None: text as written
    reading.set_image(image)
    plain = FluoroSAMPredictor(model)
    plain.set_image(image)
    read = reading.predict(text="  I need a mask of the heart ")
    assert read.prompt_text == "heart"
    assert np.array_equal(read.masks, plain.predict(text="heart").masks)
    assert reading.predict(text="my dog").prompt_text == "my dog"
    assert reading.predict(points=np.array([[10.0, 20.0]]), labels=np.array([1])).prompt_text == ""
    with pytest.raises(PromptError, match="empty"):       # validated before any reading
        reading.predict(text="   ")


def test_a_separate_grounding_encoder_gives_each_prompt_path_the_encoder_it_was_trained_with(tmp_path, rng):
    """combine_grounding_encoder: the decoder keeps one file's encoder, the text grounding reads
    the other's (as `export-weights --grounding-from` ships it)."""
    from fluorosam_ros.model.build import combine_grounding_encoder

    encoder = HashingSentenceEncoder()
    torch.manual_seed(3)
    decoder_model = build_model("fluorosam_cpu_small", sentence_encoder=encoder, pretrained_backbone=False)
    torch.manual_seed(4)
    grounding_model = build_model("fluorosam_cpu_small", sentence_encoder=encoder, pretrained_backbone=False)
    grounding_model.load_state_dict({k: v for k, v in decoder_model.state_dict().items()
                                     if not k.startswith(("image_encoder.", "text_grounding."))}, strict=False)
    save_checkpoint(decoder_model, tmp_path / "decoder.pt", "fluorosam_cpu_small")
    save_checkpoint(grounding_model, tmp_path / "grounding.pt", "fluorosam_cpu_small")
    combined_path = combine_grounding_encoder(tmp_path / "decoder.pt", tmp_path / "grounding.pt", tmp_path / "both.pt")
    combined = build_model("fluorosam_cpu_small", checkpoint=combined_path, sentence_encoder=encoder)
    assert combined.grounding_encoder is not None

    image = torch.from_numpy(rng.random((2, 3, 256, 256)).astype(np.float32))
    with torch.no_grad():
        features = combined.eval().embed_for_prompts(image)
        assert torch.allclose(features.embedding, decoder_model.eval().embed_image(image), atol=1e-5)
        assert torch.allclose(features.grounding_embedding, grounding_model.eval().embed_image(image), atol=1e-5)
        assert not torch.allclose(features.embedding, features.grounding_embedding, atol=1e-3)
        tokens = combined.encode_text(texts=["liver", "left lung"])
        assert torch.allclose(combined.ground_text(features.grounding_embedding, tokens),
                              grounding_model.ground_text(grounding_model.embed_image(image), tokens), atol=1e-4)
    # through the predictor: clicks read the decoder file's encoder, exactly as that file does
    picture = rng.random((128, 160)).astype(np.float32)
    clicks = dict(points=np.array([[40.0, 50.0]]), labels=np.array([1]))
    answers = []
    for model in (decoder_model, combined):
        predictor = FluoroSAMPredictor(model)
        predictor.set_image(picture)
        answers.append(predictor.predict(**clicks).low_res_logits)
    assert np.allclose(answers[0], answers[1], atol=1e-4)

    # combining a combined file again is refused with the reason
    with pytest.raises(CheckpointError, match="one image encoder"):
        combine_grounding_encoder(combined_path, tmp_path / "grounding.pt", tmp_path / "again.pt")
