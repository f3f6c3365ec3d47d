"""ReadIndex: JSONL, Parquet or WebDataset tar files (globs allowed) -> (key, (position, IndexRow | Failure)).

Every row keeps its position (file, byte offset or row number), so "the first row of a duplicated key"
means the same thing on every runner. Files are split into byte ranges / row groups that workers read
in parallel; a range is read whole before anything is emitted, so a retried read never doubles rows.
"""

from __future__ import annotations

import posixpath
from typing import Iterator, NamedTuple

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.index import IndexRowError, parse_index_row, parse_json_line, row_identity
from asr_distill.webdataset import TarIndexError, tar_samples
from asr_distill.records import Failure
from asr_distill.retry import RetryPolicy, retry_call
from transforms.common import report_cpu

RANGE_BYTES = 32 * 2**20
_OCTETS = "application/octet-stream"


class Position(NamedTuple):
    """Where a row sits: sorts in index order across files."""

    path: str
    offset: int  # JSONL: byte offset of the line; Parquet: row number; tar: offset of the audio member

    def describe(self) -> str:
        return f"{self.path} {'row' if _is_parquet(self.path) else 'byte'} {self.offset}"


def _is_parquet(path: str) -> bool:
    return path.lower().endswith((".parquet", ".pq"))


def index_format(pattern: str, configured: str = "auto") -> str:
    if configured != "auto":
        return configured
    if pattern.lower().endswith(".tar"):
        return "webdataset"
    return "parquet" if _is_parquet(pattern) else "jsonl"


def _compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


class _Ranges(beam.DoFn):
    """pattern -> (path, start, end): byte ranges of JSONL files, row groups of Parquet files."""

    def __init__(self, fmt: str, retry: RetryPolicy):
        self._fmt = fmt
        self._retry = retry

    def process(self, pattern: str):
        matched = retry_call(lambda: FileSystems.match([pattern])[0].metadata_list, self._retry, "index match")
        for meta in sorted(matched, key=lambda m: m.path):
            if self._fmt == "parquet":
                yield from self._row_groups(meta.path)
            elif self._fmt == "webdataset" or _compressed(meta.path):
                yield meta.path, 0, -1  # a tar or a compressed file is read by one worker
            else:
                for start in range(0, max(meta.size_in_bytes, 1), RANGE_BYTES):
                    yield meta.path, start, start + RANGE_BYTES

    def _row_groups(self, path: str):
        def read_counts():
            with FileSystems.open(path, mime_type=_OCTETS, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                md = pq.ParquetFile(f).metadata
                return [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        first = 0
        for group, rows in enumerate(retry_call(read_counts, self._retry, "index parquet footer")):
            yield path, group, first
            first += rows


def _jsonl_lines(path: str, start: int, end: int) -> list[tuple[int, bytes]]:
    """(offset, line) for every line that starts inside [start, end); end -1: the whole file."""
    compression = CompressionTypes.AUTO if end < 0 else CompressionTypes.UNCOMPRESSED
    out = []
    with FileSystems.open(path, mime_type=_OCTETS, compression_type=compression) as f:
        pos = 0
        if start > 0:
            f.seek(start - 1)
            pos = start - 1 + len(f.readline())  # the line running into the range belongs to the previous one
        while end < 0 or pos < end:
            line = f.readline()
            if not line:
                break
            out.append((pos, line))
            pos += len(line)
    return out


def _parquet_rows(path: str, group: int, first: int) -> list[tuple[int, dict]]:
    with FileSystems.open(path, mime_type=_OCTETS, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        table = pq.ParquetFile(f).read_row_group(group)
    return list(enumerate(table.to_pylist(), start=first))


def _tar_rows(path: str, _start: int, _end: int) -> list[tuple[int, dict]]:
    """A WebDataset shard's samples; member data is skipped by seeking, only headers are read."""
    with FileSystems.open(path, mime_type=_OCTETS, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return list(tar_samples(f, posixpath.basename(path)))


_READERS = {"parquet": _parquet_rows, "jsonl": _jsonl_lines, "webdataset": _tar_rows}


class _ReadRange(beam.DoFn):
    def __init__(self, fmt: str, retry: RetryPolicy):
        self._fmt = fmt
        self._retry = retry

    def finish_bundle(self):
        report_cpu()

    def process(self, rng) -> Iterator:
        path, a, b = rng
        reader = _READERS[self._fmt]
        try:
            rows = retry_call(lambda: reader(path, a, b), self._retry, "index read")
        except TarIndexError as err:  # the whole tar is one row that failed
            Metrics.counter("index", "rows").inc()
            Metrics.counter("index", "bad_rows").inc()
            yield None, (Position(path, 0), Failure(key=None, uri=path, stage="index",
                                                    error_type=type(err).__name__, message=str(err)))
            return
        for offset, raw in rows:
            if isinstance(raw, bytes) and not raw.strip():
                continue
            Metrics.counter("index", "rows").inc()
            yield _parse(Position(path, offset), raw)


def _parse(pos: Position, raw):
    try:
        if isinstance(raw, bytes):
            try:
                raw = parse_json_line(raw.decode("utf-8").strip())
            except UnicodeDecodeError:
                raise IndexRowError("line is not UTF-8 text") from None
        row = parse_index_row(raw, pos.path)
        return row.key, (pos, row)
    except IndexRowError as err:
        key, uri = row_identity(raw)
        Metrics.counter("index", "bad_rows").inc()
        return key, (pos, Failure(key=key, uri=uri, stage="index", error_type=type(err).__name__,
                                  message=f"{err} ({pos.describe()})"))


class ReadIndex(beam.PTransform):
    """Yields (key, (Position, IndexRow)) for good rows and (key or None, (Position, Failure)) for bad ones."""

    def __init__(self, pattern: str, fmt: str = "auto", retry: RetryPolicy = RetryPolicy()):
        super().__init__()
        self._pattern = pattern
        self._fmt = index_format(pattern, fmt)
        self._retry = retry

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> beam.Create([self._pattern])
                | "Ranges" >> beam.ParDo(_Ranges(self._fmt, self._retry))
                | "SpreadRanges" >> beam.Reshuffle()
                | "Rows" >> beam.ParDo(_ReadRange(self._fmt, self._retry)))
