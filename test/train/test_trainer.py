"""The trainer on a tiny generated dataset: loss falls, checkpoints resume, DDP syncs gradients."""

from __future__ import annotations

import socket
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from ddp_worker import ddp_step_worker

from ddp_worker import HashingSentenceEncoder, config_for, tiny_model
from fluorosam_ros.model.build import build_model
from fluorosam_ros.train.trainer import TrainConfig, Trainer, _warmup_cosine, learning_rate_factor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_schedule_warms_up_then_decays_at_the_milestones():
    config = TrainConfig(max_steps=100, warmup_steps=10, milestones=(0.5, 0.8))
    assert learning_rate_factor(0, config) == pytest.approx(0.1)
    assert learning_rate_factor(9, config) == pytest.approx(1.0)
    assert learning_rate_factor(49, config) == 1.0 and learning_rate_factor(50, config) == pytest.approx(0.1)
    assert learning_rate_factor(80, config) == pytest.approx(0.01)


def test_loss_falls_when_training_from_scratch(data_dir, tmp_path, record_figure):
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=25, lr=1e-3), model=tiny_model())
    samples = trainer._samples()
    batch = trainer._batch(samples)  # the same images every step: the loss must fall
    steps = [trainer.train_step(batch) for _ in range(25)]

    def falls(term: str) -> tuple[float, float]:
        return np.mean([m[term] for m in steps[:5]]), np.mean([m[term] for m in steps[-5:]])

    (first, last), (mask_first, mask_last), (ground_first, ground_last) = map(falls, ("total", "mask", "grounding"))
    record_figure(f"trainer from scratch (64^2, 2 images x 3 prompts): loss {first:.3f} -> {last:.3f} in 25 steps "
                  f"(mask {mask_first:.3f} -> {mask_last:.3f}, text grounding {ground_first:.3f} -> {ground_last:.3f})")
    assert last < 0.75 * first
    assert mask_last < 0.7 * mask_first
    assert ground_last < 0.9 * ground_first  # a coarse map of a fresh head: slower, but falling


def test_checkpoint_resumes_step_optimizer_and_rng(data_dir, tmp_path):
    config = config_for(data_dir, tmp_path, max_steps=3)
    trainer = Trainer(config, model=tiny_model())
    trainer.fit(progress=False)
    assert (tmp_path / "checkpoint_last.pt").is_file()
    resumed = Trainer(replace(config, max_steps=5), model=tiny_model())
    assert resumed.step == 3
    assert resumed.scheduler.last_epoch == trainer.scheduler.last_epoch
    state, other = trainer.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert state.keys() == other.keys()
    key = next(iter(state))
    assert torch.equal(state[key]["exp_avg"], other[key]["exp_avg"])
    assert resumed.rng.bit_generator.state == trainer.rng.bit_generator.state
    resumed.fit(progress=False)
    assert resumed.step == 5


def test_a_run_stopped_early_keeps_the_schedule_and_resumes(data_dir, tmp_path):
    config = config_for(data_dir, tmp_path, max_steps=6, stop_at_step=2, milestones=(0.5, 0.9))
    first = Trainer(config, model=tiny_model())
    first.fit(progress=False)
    assert first.step == 2 and (tmp_path / "checkpoint_last.pt").is_file()
    second = Trainer(replace(config, stop_at_step=None), model=tiny_model())
    assert second.step == 2
    second.fit(progress=False)
    assert second.step == 6
    # the decay happened at 0.5 x 6 = step 3 of the whole schedule, not of either run
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(config.lr * 0.01)


def test_codebook_is_placed_on_text_embeddings_and_dead_codes_come_back(data_dir, tmp_path):
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=3), model=tiny_model())
    samples = trainer._samples()
    metrics = trainer.train_step(trainer._batch(samples))
    vq = trainer.module.text_encoder.vq
    assert metrics["vq_reseeded"] == vq.num_codes          # step 1: every code on a real text embedding
    with torch.no_grad():
        indices = trainer.module.encode_text(texts=["left lung", "heart", "spine", "left femur"]).indices
    assert len(set(indices.tolist())) > 1                  # no collapse onto one code
    vq.usage[:10] = 0.0                                    # ten codes unused for a long time
    assert trainer.train_step(trainer._batch(samples))["vq_reseeded"] == 10


def test_codes_are_reseeded_only_during_the_first_part_of_a_run(data_dir, tmp_path):
    """`reseed_until` = 0.5 of 4 steps: the dead codes of step 3 stay where they are."""
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=4, reseed_until=0.5), model=tiny_model())
    samples = trainer._samples()
    vq = trainer.module.text_encoder.vq
    assert trainer.train_step(trainer._batch(samples))["vq_reseeded"] == vq.num_codes
    vq.usage[:5] = 0.0
    assert trainer.train_step(trainer._batch(samples))["vq_reseeded"] == 5   # step 2 <= 0.5 x 4
    vq.usage[:5] = 0.0
    before = vq.codebook.weight[:5].clone()
    assert trainer.train_step(trainer._batch(samples))["vq_reseeded"] == 0   # step 3: no more
    assert torch.allclose(vq.codebook.weight[:5], before, atol=1e-3)        # only the codebook loss moved them


def test_the_text_grounding_learns_faster_in_a_group_of_its_own(data_dir, tmp_path):
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=4, lr=1e-3, grounding_lr_scale=3.0),
                      model=tiny_model())
    groups = trainer.optimizer.param_groups
    grounding = {id(p) for p in trainer.module.text_grounding.parameters()}
    assert len(groups) == 2 and {id(p) for p in groups[1]["params"]} >= grounding
    assert groups[1]["lr"] == pytest.approx(3.0 * groups[0]["lr"])


def test_pretraining_the_text_grounding_lowers_its_loss_and_touches_nothing_else(data_dir, tmp_path, record_figure):
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=2, lr=1e-3, freeze_image_encoder=True,
                                 embedding_cache_copies=1), model=tiny_model())
    others = {name: p.detach().clone() for name, p in trainer.module.named_parameters()
              if not name.startswith("text_grounding.")}
    losses = trainer.pretrain_grounding(trainer._samples(), 40, progress=False)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    record_figure(f"text grounding pre-training (64^2, 40 steps): loss {first:.3f} -> {last:.3f}")
    assert last < 0.8 * first
    assert all(torch.equal(p, others[name]) for name, p in trainer.module.named_parameters() if name in others)
    # through fit(): kept in a checkpoint even with no decoder steps, and not repeated on resume
    config = config_for(data_dir, tmp_path / "fit", max_steps=0, freeze_image_encoder=True, embedding_cache_copies=1,
                        grounding_pretrain_steps=3)
    metrics = Trainer(config, model=tiny_model()).fit(progress=False)
    assert metrics["step"] == 0 and np.isfinite(metrics["grounding_loss"])
    _assert_not_repeated_on_resume(config, "grounding")
    with pytest.raises(ValueError, match="freeze_image_encoder"):
        Trainer(config_for(data_dir, tmp_path / "b", max_steps=2), model=tiny_model()).pretrain_grounding(iter([]), 1)


def refiner_model():
    """The tiny model with the (opt-in) grounding refiner and mask prompts."""
    torch.manual_seed(0)
    return build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(),
                       overrides={"image_size": 64, "num_codes": 64, "decoder_mlp_dim": 256,
                                  "grounding_refiner": True, "mask_input": True})


def _assert_not_repeated_on_resume(config: TrainConfig, part: str, model=tiny_model) -> None:
    """A run resumed after `part` ("grounding" or "refiner") was trained alone goes on with the decoder."""
    resumed = Trainer(replace(config, max_steps=1), model=model())
    assert getattr(resumed, f"{part}_pretrained")
    calls = []
    setattr(resumed, f"pretrain_{part}", lambda *a, **k: calls.append(1))
    resumed.fit(progress=False)
    assert not calls and resumed.step == 1


def test_training_the_grounding_refiner_lowers_its_loss_and_touches_nothing_else(data_dir, tmp_path, record_figure):
    config = config_for(data_dir, tmp_path, max_steps=0, lr=1e-3, freeze_image_encoder=True,
                        embedding_cache_copies=1, refiner_pretrain_steps=3)
    trainer = Trainer(replace(config, refiner_pretrain_steps=0), model=refiner_model())
    others = {name: p.detach().clone() for name, p in trainer.module.named_parameters()
              if not name.startswith("grounding_refiner.")}
    losses = trainer.pretrain_refiner(trainer._samples(), 60, progress=False)
    # the cache kept the backbone maps the refiner reads, at the stride-8 and -4 grids of 64 px
    assert {k: tuple(v.shape[-2:]) for k, v in trainer.embedding_cache.images[0].skips[0].items()} == {8: (8, 8), 4: (16, 16)}
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    record_figure(f"grounding refiner training (64^2, 60 steps): loss {first:.3f} -> {last:.3f}")
    assert last < first
    assert all(torch.equal(p, others[name]) for name, p in trainer.module.named_parameters() if name in others)
    # through fit(): kept in a checkpoint even with no decoder steps, and not repeated on resume
    metrics = Trainer(config, model=refiner_model()).fit(progress=False)
    assert np.isfinite(metrics["refiner_loss"]) and metrics["step"] == 0
    _assert_not_repeated_on_resume(config, "refiner", refiner_model)
    # without the cache the refiner's maps are encoded per step
    uncached = Trainer(config_for(data_dir, tmp_path / "uncached", max_steps=0, freeze_image_encoder=True),
                       model=refiner_model())
    assert np.isfinite(uncached.pretrain_refiner(uncached._samples(), 2, progress=False)).all()


def test_tuning_the_encoder_with_the_grounding_lowers_the_map_loss_and_leaves_the_decoder(data_dir, tmp_path,
                                                                                          record_figure):
    config = config_for(data_dir, tmp_path, max_steps=0, lr=1e-3, grounding_encoder_lr=1e-3)
    trainer = Trainer(config, model=refiner_model())
    before = {name: p.detach().clone() for name, p in trainer.module.named_parameters()}
    losses = trainer.tune_grounding_with_encoder(trainer._samples(), 60, progress=False)
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    record_figure(f"encoder + text grounding + refiner (64^2, 60 steps): map loss {first:.3f} -> {last:.3f}")
    assert last < first
    changed = {name for name, p in trainer.module.named_parameters() if not torch.equal(p, before[name])}
    assert {name.split(".")[0] for name in changed} == {"image_encoder", "text_grounding", "grounding_refiner"}
    # through fit(): kept in a checkpoint even with no decoder steps, and not repeated on resume
    staged = replace(config, out_dir=str(tmp_path / "fit"), grounding_encoder_steps=2)
    metrics = Trainer(staged, model=refiner_model()).fit(progress=False)
    assert metrics["step"] == 0 and np.isfinite(metrics["grounding_encoder_loss"])
    resumed = Trainer(replace(staged, max_steps=1), model=refiner_model())
    assert resumed.grounding_encoder_tuned
    calls = []
    resumed.tune_grounding_with_encoder = lambda *a, **k: calls.append(1)
    resumed.fit(progress=False)
    assert not calls and resumed.step == 1


def test_tuning_the_encoder_with_the_grounding_is_refused_where_it_cannot_train(data_dir, tmp_path):
    with pytest.raises(ValueError, match="encoder trainable"):
        Trainer(config_for(data_dir, tmp_path / "a", max_steps=0, freeze_image_encoder=True),
                model=refiner_model()).tune_grounding_with_encoder(iter([]), 1)
    with pytest.raises(ValueError, match="no grounding refiner"):
        Trainer(config_for(data_dir, tmp_path / "b", max_steps=0), model=tiny_model()).tune_grounding_with_encoder(
            iter([]), 1)


def test_the_encoder_stage_warms_up_then_decays_by_a_cosine_to_a_tenth():
    factors = [_warmup_cosine(step, 10, 100) for step in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_click_rounds_get_the_previous_best_answer_as_their_mask_prompt(data_dir, tmp_path):
    """Mostly the previous round's best of 3 (the answer a user corrects), sometimes the refined
    text map or nothing; the text-only round gets the map or nothing."""
    from types import SimpleNamespace

    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=1), model=refiner_model())
    refined, previous = torch.randn(2, 16, 16), torch.randn(2, 3, 16, 16)
    terms = [SimpleNamespace(best_index=torch.tensor([2, 0]))]
    draws = [trainer._mask_prompt(refined, previous, terms) for _ in range(400)]
    took_previous = [d for d in draws if d is not None and torch.equal(d, previous[[0, 1], [2, 0]])]
    took_map = [d for d in draws if d is refined]
    nones = draws.count(None)
    assert len(took_previous) + len(took_map) + nones == 400
    assert 0.6 < len(took_previous) / 400 < 0.8 and 0.08 < nones / 400 < 0.22 and took_map
    first_round = [trainer._mask_prompt(refined, None, []) for _ in range(100)]
    assert all(d is None or d is refined for d in first_round) and None in first_round
    plain = Trainer(config_for(data_dir, tmp_path / "plain", max_steps=1), model=tiny_model())
    assert plain._mask_prompt(refined, previous, terms) is None


def test_training_from_the_bundled_weights_builds_the_parts_they_have(data_dir, tmp_path):
    """--init-from weights with the (opt-in) refiner and mask prompts build both; asked off, the
    extra weights are refused by name instead of dropped."""
    from fluorosam_ros.model.build import CheckpointError, bundled_checkpoint

    weights = bundled_checkpoint("fluorosam_cpu_small")
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=0, image_size=None, init_from=str(weights)))
    assert trainer.module.grounding_refiner is not None
    assert trainer.module.prompt_encoder.mask_downscaling is not None
    # the bundled separate grounding encoder is left out: training reads the decoder's encoder
    assert trainer.module.grounding_encoder is None
    bundled = torch.load(weights, weights_only=True)["model"]
    assert any(key.startswith("grounding_encoder.") for key in bundled)
    key = "backbone.stem.conv.weight"
    assert torch.equal(trainer.module.image_encoder.state_dict()[key].half(), bundled["image_encoder." + key])
    with pytest.raises(CheckpointError, match="grounding_refiner"):
        Trainer(config_for(data_dir, tmp_path / "off", max_steps=0, image_size=None, init_from=str(weights),
                           grounding_refiner=False))


def test_a_frozen_grounding_stays_as_it_is_while_its_dense_embedding_trains(data_dir, tmp_path):
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=3, lr=1e-3, freeze_grounding=True),
                      model=tiny_model())
    grounding = {name: p.detach().clone() for name, p in trainer.module.text_grounding.named_parameters()}
    embed = trainer.module.prompt_encoder.grounding_embed.weight.detach().clone()
    trainer.fit(progress=False)
    assert all(torch.equal(p, grounding[name]) for name, p in trainer.module.text_grounding.named_parameters())
    assert not torch.equal(trainer.module.prompt_encoder.grounding_embed.weight, embed)
    with pytest.raises(ValueError, match="freeze_grounding"):
        Trainer(config_for(data_dir, tmp_path / "b", freeze_grounding=True, grounding_pretrain_steps=5,
                           freeze_image_encoder=True), model=tiny_model())


def test_stop_request_saves_a_checkpoint(data_dir, tmp_path):
    trainer = Trainer(config_for(data_dir, tmp_path, max_steps=50), model=tiny_model())
    trainer.status_callback = lambda metrics: trainer.request_stop() if metrics["step"] >= 2 else None
    trainer.fit(progress=False)
    assert trainer.step == 2
    assert Trainer(config_for(data_dir, tmp_path, max_steps=50), model=tiny_model()).step == 2


def test_ddp_with_two_gloo_processes_keeps_the_replicas_identical(data_dir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(ddp_step_worker, args=(2, port, str(data_dir), str(tmp_path), queue), nprocs=2, join=True)
    difference = queue.get()
    assert difference < 1e-6  # gradients were averaged, so both replicas took the same step
