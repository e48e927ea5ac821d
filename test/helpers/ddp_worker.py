"""Shared by the trainer tests, and importable by the processes that torch.multiprocessing spawns."""

from __future__ import annotations

import os
from dataclasses import replace

import torch
import torch.distributed as dist

from fluorosam_ros.model.build import build_model
from fluorosam_ros.train.prompts import PromptSamplerConfig
from fluorosam_ros.train.trainer import TrainConfig, Trainer


class HashingSentenceEncoder:
    """Deterministic stand-in for MiniLM (isolation: the real encoder is tested in test_text_encoder)."""

    dim = 384

    def encode(self, texts):
        rows = [torch.randn(384, generator=torch.Generator().manual_seed(sum(map(ord, t)) * 7919 % 2**31))
                for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def tiny_model():
    torch.manual_seed(0)
    return build_model("fluorosam_cpu_small", sentence_encoder=HashingSentenceEncoder(),
                       overrides={"image_size": 64, "num_codes": 64, "decoder_mlp_dim": 256})


def config_for(data_dir, out_dir, **changes) -> TrainConfig:
    settings = dict(data_dir=str(data_dir), out_dir=str(out_dir), image_size=64, images_per_step=2,
                    prompts_per_image=3, max_points=1, warmup_steps=2, augment=False, checkpoint_every=1000,
                    prompts=PromptSamplerConfig(point_only_probability=0.0))
    return replace(TrainConfig(), **{**settings, **changes})


def ddp_step_worker(rank: int, world_size: int, port: int, data_dir: str, out_dir: str, queue) -> None:
    """One DDP training step on this rank; rank 0 reports how far the replicas' weights differ."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    trainer = Trainer(config_for(data_dir, out_dir, max_steps=1, seed=rank), model=tiny_model())
    torch.manual_seed(100 + rank)  # different prompts and data on each rank
    trainer.train_step(trainer._batch(trainer._samples()))
    flat = torch.cat([p.detach().flatten() for p in trainer.module.parameters() if p.requires_grad])
    gathered = [torch.zeros_like(flat) for _ in range(world_size)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        queue.put(float((gathered[0] - gathered[1]).abs().max()))
    dist.barrier()
    # Leave without the interpreter's teardown: gloo's background threads can abort the
    # process ("terminate called without an active exception") while static objects die.
    os._exit(0)
