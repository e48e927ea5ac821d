"""Training the prompt path and decoder from cached image embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddp_worker import config_for, tiny_model
from fluorosam_ros.train.embedding_cache import EmbeddingCache
from fluorosam_ros.train.trainer import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def cached_trainer(data_dir, out_dir, copies: int = 2, **changes) -> Trainer:
    return Trainer(config_for(data_dir, out_dir, freeze_image_encoder=True, embedding_cache_copies=copies,
                              **changes), model=tiny_model())


def test_cache_holds_every_training_image_with_its_copies_and_exact_masks(data_dir, tmp_path):
    trainer = cached_trainer(data_dir, tmp_path, copies=2, augment=True)
    next(trainer._samples())
    cache = trainer.embedding_cache
    dataset_items = {item["key"]: item for item in trainer._dataset(0)}
    assert len(cache) == len(dataset_items) > 0 and cache.copies == 2
    for image in cache.images:
        expected = dataset_items[image.key]["masks"].numpy()
        assert np.array_equal(image.masks(), expected)
        # each copy has its own augmentation draw, so the two embeddings differ
        assert not torch.equal(image.embeddings[0], image.embeddings[1])


def test_cached_embedding_equals_the_encoders_output(data_dir, tmp_path):
    trainer = cached_trainer(data_dir, tmp_path, copies=1, augment=False)
    next(trainer._samples())
    model = trainer.module.eval()
    item = next(iter(trainer._dataset(0)))
    tensor, size = model.preprocessor(item["image"][0].numpy(), item["exposed"].numpy())
    with torch.no_grad():
        expected = model.embed_image(tensor)[0]
    cached = next(image for image in trainer.embedding_cache.images if image.key == item["key"])
    assert cached.input_size == tuple(size)
    torch.testing.assert_close(cached.embeddings[0].float(), expected, atol=2e-2, rtol=1e-2)


def test_training_from_the_cache_lowers_the_loss_and_leaves_the_encoder_alone(data_dir, tmp_path):
    trainer = cached_trainer(data_dir, tmp_path, copies=1, lr=1e-3, max_steps=30)
    encoder_before = {k: v.clone() for k, v in trainer.module.image_encoder.state_dict().items()}
    batch = trainer._batch(trainer._samples())  # the same items every step: the loss must fall
    assert all("embedding" in item for item in batch)
    losses = [trainer.train_step(batch)["total"] for _ in range(30)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    for key, value in trainer.module.image_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key


def test_a_cached_run_checkpoints_and_resumes(data_dir, tmp_path):
    first = cached_trainer(data_dir, tmp_path, copies=1, max_steps=4, stop_at_step=2)
    first.fit(progress=False)
    resumed = cached_trainer(data_dir, tmp_path, copies=1, max_steps=4)
    assert resumed.step == 2
    resumed.fit(progress=False)
    assert resumed.step == 4


def test_the_cache_needs_a_frozen_encoder(data_dir, tmp_path):
    with pytest.raises(ValueError, match="freeze_image_encoder"):
        Trainer(config_for(data_dir, tmp_path, embedding_cache_copies=2), model=tiny_model())
    with pytest.raises(ValueError, match=">= 0"):
        cached_trainer(data_dir, tmp_path, copies=-1)


def test_an_empty_cache_is_refused():
    with pytest.raises(ValueError, match="empty"):
        next(EmbeddingCache().stream(np.random.default_rng(0)))
