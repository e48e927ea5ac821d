"""A tiny generated dataset shared by the training tests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fluorosam_ros.data.generate import GeneratorConfig, generate


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_fluoroseg")
    generate(replace(GeneratorConfig(), out_dir=str(out), images=8, image_size_px=64, shard_size=4, workers=1,
                     deformation_probability=0.0, tool_probability=0.3, seed=11), progress=False)
    return out
