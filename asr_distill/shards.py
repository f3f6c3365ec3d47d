"""Byte ranges of bigger files as media items: packed PCM shards and WebDataset tar members.

An index row's uri may name a range of a file: `shard-1a2b.dat#offset=4096&length=64000`. A `.dat`
range is packed audio (int16 little-endian, 16 kHz mono, written by `python -m beam_pipeline.pack`);
any other range (a member of a `.tar`) holds the bytes of a media file and is decoded as one.

Packed audio is read by memory-mapping the shard read-only: the int16 samples are a view of the
page cache, shared by every process on the machine, and shards are never written after they are
indexed, so no locking is needed.
"""

from __future__ import annotations

import io
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Optional

import numpy as np

PCM_SUFFIX = ".dat"
PCM_DTYPE = np.dtype("<i2")
_RANGE = re.compile(r"^(?P<path>.+)#offset=(?P<offset>\d+)&length=(?P<length>\d+)$")


@dataclass(frozen=True)
class ByteRange:
    path: str
    offset: int
    length: int

    @property
    def is_pcm(self) -> bool:
        return self.path.endswith(PCM_SUFFIX)

    def uri(self) -> str:
        return f"{self.path}#offset={self.offset}&length={self.length}"


def parse_byte_range(uri: str) -> Optional[ByteRange]:
    """The range a uri names, or None for a plain file (a '#' alone in a file name is not a range)."""
    m = _RANGE.match(uri)
    return ByteRange(m["path"], int(m["offset"]), int(m["length"])) if m else None


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, rounded to nearest and clipped."""
    return np.clip(np.rint(wave * 32768.0), -32768, 32767).astype(PCM_DTYPE)


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) * np.float32(1 / 32768)


class PcmError(ValueError):
    """A packed range that cannot be packed audio."""


def pcm_from_bytes(data: bytes) -> np.ndarray:
    if len(data) % PCM_DTYPE.itemsize:
        raise PcmError(f"packed range of {len(data)} bytes is not whole int16 samples")
    return np.frombuffer(data, dtype=PCM_DTYPE)


_MAPS: "OrderedDict[str, np.memmap]" = OrderedDict()
_MAX_MAPS = 64  # open shard maps per process; mapping costs address space, not memory


def read_pcm_mmap(rng: ByteRange) -> np.ndarray:
    """The int16 samples of a packed range in a local shard: a zero-copy view of the mapped file."""
    if rng.length % PCM_DTYPE.itemsize or rng.offset % PCM_DTYPE.itemsize:
        raise PcmError(f"packed range {rng.offset}+{rng.length} is not aligned to int16 samples")
    shard = _MAPS.get(rng.path)
    if shard is None:
        shard = np.memmap(rng.path, dtype=PCM_DTYPE, mode="r")
        _MAPS[rng.path] = shard
        if len(_MAPS) > _MAX_MAPS:
            _MAPS.popitem(last=False)
    else:
        _MAPS.move_to_end(rng.path)
    first = rng.offset // PCM_DTYPE.itemsize
    count = rng.length // PCM_DTYPE.itemsize
    if first + count > len(shard):
        raise PcmError(f"packed range {rng.offset}+{rng.length} runs past the end of its shard "
                       f"({len(shard) * PCM_DTYPE.itemsize} bytes)")
    return shard[first:first + count]


class RangeReader(io.RawIOBase):
    """A read-only, seekable window [offset, offset + length) of a seekable binary stream."""

    def __init__(self, source: BinaryIO, offset: int, length: int):
        self._source, self._offset, self._length = source, offset, length
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, pos, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(base + pos, 0), self._length)
        return self._pos

    def readinto(self, b):
        n = min(len(b), self._length - self._pos)
        if n <= 0:
            return 0
        self._source.seek(self._offset + self._pos)
        data = self._source.read(n)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)
