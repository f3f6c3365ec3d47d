"""Pack: decoded audio appended as int16 16 kHz mono to large shard files, each committed with its index.

A worker fills one shard at a time (`shard-<id>.dat`, written in place) and, once the shard holds
`shard_bytes` or the bundle ends, commits `index-<id>.jsonl`: one row per item naming its byte range
(temp file + rename). The index file is the commit: a shard without one (its worker was killed) is
referenced by nothing and `unindexed_shards` finds it for deletion. The id is a hash of the shard's
first key, so a bundle the runner retries writes the same shard again instead of a second copy.
"""

from __future__ import annotations

import hashlib
import uuid

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.records import SAMPLE_RATE, DecodedAudio, IndexRow
from asr_distill.redact import redact
from asr_distill.retry import RetryPolicy, retry_call
from asr_distill.shards import PCM_DTYPE, PCM_SUFFIX, ByteRange, to_pcm16
from transforms.write import to_json_line, work_path, write_then_rename

SHARD_PREFIX, INDEX_PREFIX = "shard-", "index-"


def shard_id(first_key: str) -> str:
    return hashlib.sha256(first_key.encode("utf-8")).hexdigest()[:16]


def packed_row(row: IndexRow, shard: str, offset: int, length: int) -> dict:
    """A pipeline-readable index row for one packed item (uri relative to the index file)."""
    meta = dict(row.meta)
    meta.setdefault("source_uri", redact(row.uri))
    out = {"key": row.key, "uri": ByteRange(shard, offset, length).uri(), "shard": shard,
           "offset": offset, "length": length, "num_samples": length // PCM_DTYPE.itemsize,
           "duration_s": length / PCM_DTYPE.itemsize / SAMPLE_RATE, "size_bytes": length, "meta": meta}
    if row.language:
        out["language"] = row.language
    return out


class _PackDoFn(beam.DoFn):
    def __init__(self, output: str, shard_bytes: int, retry: RetryPolicy):
        self._output = output
        self._shard_bytes = shard_bytes
        self._retry = retry

    def start_bundle(self):
        self._file = None

    def process(self, audio: DecodedAudio):
        if self._file is None:
            self._start(audio.row.key)
        pcm = to_pcm16(audio.wave)
        self._file.write(pcm.tobytes())
        self._rows.append(packed_row(audio.row, self._name, self._written, pcm.nbytes))
        self._written += pcm.nbytes
        Metrics.counter("pack", "items").inc()
        Metrics.counter("pack", "audio_ms").inc(len(pcm) * 1000 // SAMPLE_RATE)
        if self._written >= self._shard_bytes:
            self._commit()

    def finish_bundle(self):
        self._commit()

    def _start(self, first_key: str):
        self._id = shard_id(first_key)
        self._name = f"{SHARD_PREFIX}{self._id}{PCM_SUFFIX}"
        self._file = FileSystems.create(FileSystems.join(self._output, self._name),
                                        mime_type="application/octet-stream",
                                        compression_type=CompressionTypes.UNCOMPRESSED)
        self._rows: list[dict] = []
        self._written = 0

    def _commit(self):
        if self._file is None:
            return
        self._file.close()  # the shard is whole before its index exists
        data = "".join(to_json_line(r) + "\n" for r in self._rows).encode("utf-8")
        final = FileSystems.join(self._output, f"{INDEX_PREFIX}{self._id}.jsonl")
        tmp = work_path(self._output, "tmp", f"index-{uuid.uuid4().hex}.tmp")
        retry_call(lambda: write_then_rename(tmp, final, data), self._retry, "commit pack index",
                   on_retry=lambda _err: Metrics.counter("write", "retries").inc())
        Metrics.counter("pack", "shards").inc()
        Metrics.counter("pack", "shard_bytes").inc(self._written)
        self._file = None


class PackShards(beam.PTransform):
    """DecodedAudio -> shard files + index files in `output`; nothing downstream."""

    def __init__(self, output: str, shard_bytes: int, retry: RetryPolicy = RetryPolicy()):
        super().__init__()
        self._fn = _PackDoFn(output, shard_bytes, retry)

    def expand(self, audio):
        return audio | "Append" >> beam.ParDo(self._fn)


def unindexed_shards(output: str) -> list[str]:
    """Shards in `output` that no index file names: left by a worker that died while writing."""
    def names(prefix, suffix):
        found = FileSystems.match([FileSystems.join(output, f"{prefix}*{suffix}")])[0].metadata_list
        return {m.path.rsplit("/", 1)[-1][len(prefix):-len(suffix)]: m.path for m in found}
    shards, indexed = names(SHARD_PREFIX, PCM_SUFFIX), names(INDEX_PREFIX, ".jsonl")
    return sorted(path for sid, path in shards.items() if sid not in indexed)
