"""Sharded, streamable dataset IO: WebDataset-style tar files (one sample = several members
sharing a key), written atomically so an interrupted run can resume, read back as tensors.

Members of sample `k`: `k.json.zlib` (metadata and prompts, zlib-compressed JSON), `k.image.npy` (float16 line integrals,
-ln(I/I0), 0 outside the collimated field), `k.exposed.npy` (packed bits) and `k.masks.npy.zlib`
(packed bits, one row per mask in the order of `json["masks"]`, zlib-compressed: masks are
large flat regions, so this is ~10x smaller again).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .groundtruth import pack_masks, unpack_masks

log = logging.getLogger(__name__)
SHARD_PATTERN = "shard-{index:06d}.tar"


class ShardError(ValueError):
    """A shard that cannot be read (truncated, corrupt, missing members)."""


@dataclass
class Sample:
    key: str
    meta: dict
    image: np.ndarray      # (H, W) float32 line integrals
    exposed: np.ndarray    # (H, W) bool
    masks: np.ndarray      # (N, H, W) bool

    def mask(self, name: str) -> np.ndarray:
        return self.masks[[m["name"] for m in self.meta["masks"]].index(name)]


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class ShardWriter:
    """Writes samples into `path` via a temporary file; `close()` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.partial = self.path.with_suffix(".tar.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tar = tarfile.open(self.partial, "w")
        self.count = 0

    def _add(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        self._tar.addfile(info, io.BytesIO(payload))

    def write(self, sample: Sample) -> None:
        height, width = sample.image.shape
        meta = {**sample.meta, "height": height, "width": width}
        self._add(f"{sample.key}.json.zlib", zlib.compress(json.dumps(meta).encode(), 6))
        self._add(f"{sample.key}.image.npy", _npy_bytes(sample.image.astype(np.float16)))
        self._add(f"{sample.key}.exposed.npy", _npy_bytes(pack_masks(sample.exposed[None])))
        self._add(f"{sample.key}.masks.npy.zlib", zlib.compress(_npy_bytes(pack_masks(sample.masks)), 1))
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        self.partial.replace(self.path)

    def abort(self) -> None:
        self._tar.close()
        self.partial.unlink(missing_ok=True)


def read_shard(path: Path) -> Iterator[Sample]:
    """Samples of one shard, in order. Raises ShardError with the reason on a broken file."""
    members: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                key, _, kind = member.name.partition(".")
                data = tar.extractfile(member)
                if data is None:
                    continue
                members.setdefault(key, {})[kind] = data.read()
            end = tar.offset
        # a file cut at a member boundary reads as a shorter shard: only the end-of-archive
        # marker (two zero blocks, written on close) tells that nothing is missing
        if Path(path).stat().st_size < end + 2 * tarfile.BLOCKSIZE:
            raise ShardError(f"{path}: truncated shard (no end-of-archive marker after {end} bytes)")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ShardError(f"{path}: unreadable shard ({error})") from error
    for key, parts in members.items():
        yield _decode(path, key, parts)


def _decode(path: Path, key: str, parts: dict[str, bytes]) -> Sample:
    missing = {"json.zlib", "image.npy", "exposed.npy", "masks.npy.zlib"} - set(parts)
    if missing:
        raise ShardError(f"{path}: sample {key} lacks {sorted(missing)}")
    try:
        meta = json.loads(zlib.decompress(parts["json.zlib"]))
        if not isinstance(meta, dict):
            raise ValueError("its metadata is not a JSON object")
        height, width = meta["height"], meta["width"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
            raise ValueError(f"height and width must be positive integers, got {height!r} x {width!r}")
        if not isinstance(meta.get("masks", []), list):
            raise ValueError("its 'masks' entry is not a list")
        image = np.load(io.BytesIO(parts["image.npy"]), allow_pickle=False).astype(np.float32)
        if image.shape != (height, width):  # checked first: the sizes below come from it
            raise ShardError(f"{path}: sample {key} has inconsistent shapes")
        exposed = _unpack(np.load(io.BytesIO(parts["exposed.npy"]), allow_pickle=False), height, width)[0]
        masks_npy = zlib.decompress(parts["masks.npy.zlib"])
        masks = _unpack(np.load(io.BytesIO(masks_npy), allow_pickle=False), height, width)
    except (ValueError, KeyError, TypeError, EOFError, json.JSONDecodeError, zlib.error) as error:
        raise ShardError(f"{path}: sample {key} is corrupt ({error})") from error
    except MemoryError as error:  # an .npy header that declares an impossible size
        raise ShardError(f"{path}: sample {key} is corrupt (an array header declares too much data)") from error
    if len(masks) != len(meta.get("masks", [])) or len(exposed) != height:
        raise ShardError(f"{path}: sample {key} has inconsistent shapes")
    return Sample(key, meta, image, exposed, masks)


def _unpack(packed: np.ndarray, height: int, width: int) -> np.ndarray:
    """Packed masks, checked to hold exactly height x width bits per row (never padded)."""
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[0] < 1 \
            or packed.shape[1] != (height * width + 7) // 8:
        raise ValueError(f"packed masks of shape {packed.shape} and type {packed.dtype} do not hold "
                         f"{height}x{width} masks")
    return unpack_masks(packed, height, width)


def shard_paths(folder: Path, split: str | None = None) -> list[Path]:
    folder = Path(folder)
    pattern = f"{split}/shard-*.tar" if split else "**/shard-*.tar"
    return sorted(folder.glob(pattern))


def iterate_samples(paths: list[Path], rank: int = 0, world_size: int = 1, skip_corrupt: bool = True) -> Iterator[Sample]:
    """Stream samples from this rank's share of the shards (shard i goes to rank i % world_size)."""
    for index, path in enumerate(paths):
        if index % world_size != rank:
            continue
        try:
            yield from read_shard(path)
        except ShardError as error:
            if not skip_corrupt:
                raise
            log.error("skipping %s", error)
