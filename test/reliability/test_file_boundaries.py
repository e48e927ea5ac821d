"""Corrupt files: checkpoints (truncated, random bytes, another architecture, NaN weights, not
our format) raise CheckpointError; dataset shards (truncated, random bytes, missing or corrupt
members, inconsistent metadata) raise ShardError; streaming skips a corrupt shard."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluorosam_ros.data.shards import iterate_samples
from fluorosam_ros.reliability import REFUSED
from fluorosam_ros.reliability import fuzz


@pytest.fixture(scope="module")
def checkpoints():
    return fuzz.checkpoint_bench()


@pytest.fixture(scope="module")
def shard():
    return fuzz.valid_shard_bytes()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("corrupt_files")


def test_the_valid_files_load(checkpoints, shard, folder):
    from fluorosam_ros.model.build import load_checkpoint

    (folder / "good.pt").write_bytes(checkpoints.payload)
    load_checkpoint(checkpoints.model, folder / "good.pt", expected_name="fluorosam_cpu_small")
    (folder / "shard-000000.tar").write_bytes(shard)
    assert len(list(iterate_samples([folder / "shard-000000.tar"]))) == 2


@settings(max_examples=25)
@given(data=st.data())
def test_corrupt_checkpoints_raise_checkpoint_error(ledger, checkpoints, folder, data):
    case = data.draw(fuzz.bad_checkpoints(checkpoints), label="checkpoint")
    assert fuzz.check_checkpoint(ledger, checkpoints, case, folder) == REFUSED, ledger.problems()


@settings(max_examples=150)
@given(data=st.data())
def test_corrupt_shards_raise_shard_error(ledger, shard, folder, data):
    case = data.draw(fuzz.bad_shards(shard), label="shard")
    assert fuzz.check_shard(ledger, case, folder) == REFUSED, ledger.problems()


def test_streaming_skips_a_corrupt_shard(shard, folder):
    (folder / "shard-000001.tar").write_bytes(shard)
    (folder / "shard-000002.tar").write_bytes(shard[:1500])
    keys = [s.key for s in iterate_samples([folder / "shard-000001.tar", folder / "shard-000002.tar"])]
    assert keys == ["k0", "k1"]


def test_bit_flips_inside_tensor_data_are_detected(checkpoints, folder):
    """Flipped bytes in a tensor's data unpickle fine (torch does not check the zip's CRCs) and
    would load as finite, wrong weights: the stored SHA-256 of the weights catches them."""
    from fluorosam_ros.model.build import CheckpointError, load_checkpoint

    data = bytearray(checkpoints.payload)
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0x01 for b in data[middle:middle + 4])
    (folder / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(checkpoints.model, folder / "flipped.pt", expected_name="fluorosam_cpu_small")