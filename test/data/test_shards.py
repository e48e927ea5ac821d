from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.data.shards import Sample, ShardError, ShardWriter, iterate_samples, read_shard


def make_sample(rng, key: str) -> Sample:
    image = rng.random((16, 20)).astype(np.float32) * 5
    masks = rng.random((2, 16, 20)) > 0.7
    exposed = np.ones((16, 20), bool)
    exposed[:, :3] = False
    meta = {"masks": [{"name": "heart"}, {"name": "liver"}], "split": "train"}
    return Sample(key, meta, image, exposed, masks)


def test_round_trip(tmp_path, rng):
    samples = [make_sample(rng, f"k{i}") for i in range(3)]
    writer = ShardWriter(tmp_path / "shard-000000.tar")
    for sample in samples:
        writer.write(sample)
    assert not (tmp_path / "shard-000000.tar").exists()  # only after close
    writer.close()
    read = list(read_shard(tmp_path / "shard-000000.tar"))
    assert [s.key for s in read] == ["k0", "k1", "k2"]
    for original, copy in zip(samples, read):
        np.testing.assert_allclose(copy.image, original.image, rtol=1e-3)  # float16 storage
        np.testing.assert_array_equal(copy.masks, original.masks)
        np.testing.assert_array_equal(copy.exposed, original.exposed)
        np.testing.assert_array_equal(copy.mask("liver"), original.masks[1])


def test_truncated_shard_raises_a_clear_error_and_streaming_skips_it(tmp_path, rng):
    good = ShardWriter(tmp_path / "shard-000001.tar")
    good.write(make_sample(rng, "a"))
    good.close()
    bad = tmp_path / "shard-000002.tar"
    bad.write_bytes((tmp_path / "shard-000001.tar").read_bytes()[:700])
    with pytest.raises(ShardError):
        list(read_shard(bad))
    keys = [s.key for s in iterate_samples([tmp_path / "shard-000001.tar", bad])]
    assert keys == ["a"]
    with pytest.raises(ShardError):
        list(iterate_samples([bad], skip_corrupt=False))


def test_ranks_get_disjoint_shards(tmp_path, rng):
    paths = []
    for index in range(4):
        writer = ShardWriter(tmp_path / f"shard-{index:06d}.tar")
        writer.write(make_sample(rng, f"s{index}"))
        writer.close()
        paths.append(tmp_path / f"shard-{index:06d}.tar")
    rank0 = [s.key for s in iterate_samples(paths, rank=0, world_size=2)]
    rank1 = [s.key for s in iterate_samples(paths, rank=1, world_size=2)]
    assert rank0 == ["s0", "s2"] and rank1 == ["s1", "s3"]
