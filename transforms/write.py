"""Write: JSONL files named by their content, so that writing the same records again is a no-op.

Segment texts (`work=True`, under OUTPUT/_work) are committed as they come: every
`commit_every_records` records, every `commit_every_s` seconds and at the end of each bundle, the
lines go to a temporary file that is then renamed to NAME-<hash of the lines>.jsonl. They are what a
killed job resumes from, and a text committed twice is read once (Admit keeps one per index).

Results (transcripts, failures, filtered lines) are written so that any attempt writes the same
files: each record goes to one of B buckets by a stable hash of its key (B = records /
`commit_every_records`, at least 1), a bucket's lines are sorted, and its file is named by the hash of
those lines. Flink or Spark running a task again after a failure, or the whole job again, with its
records batched however differently, rewrites byte-identical files under the same names: never a
second copy of a key. A job killed at any moment leaves only whole files (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Callable, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.config import WriterConfig
from asr_distill.records import Failure, SegmentText
from asr_distill.retry import RetryPolicy, retry_call
from transforms.common import report_cpu

WORK_DIR = "_work"


def work_path(output_dir: str, *parts: str) -> str:
    return FileSystems.join(output_dir, WORK_DIR, *parts)


def to_json_line(record) -> str:
    if isinstance(record, str):  # already a committed line (carried over on resume)
        return record
    if isinstance(record, Failure):
        record = record.to_json()
    elif isinstance(record, SegmentText):
        record = segment_text_json(record)
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def segment_text_json(t: SegmentText) -> dict:
    out = {"key": t.key, "index": t.index, "start_s": t.start_s, "end_s": t.end_s, "text": t.text,
           "signals": t.signals, "parts": [list(p) for p in t.parts]}
    if t.chunks is not None:
        out["chunks"] = t.chunks
    if t.hints is not None:
        out["hints"] = list(t.hints)
    return out


def segment_text_from_json(d: dict) -> SegmentText:
    return SegmentText(d["key"], d["index"], d["start_s"], d["end_s"], d["text"], d["signals"],
                       tuple(tuple(p) for p in d["parts"]), d.get("chunks"),
                       None if d.get("hints") is None else tuple(d["hints"]))


def write_then_rename(tmp: str, final: str, data: bytes) -> None:
    with FileSystems.create(tmp, mime_type="application/jsonl") as f:
        f.write(data)
    FileSystems.rename([tmp], [final])


def _count_retry(_err) -> None:
    Metrics.counter("write", "retries").inc()


class _Commit(beam.DoFn):
    """(name, record) pairs -> DIR/NAME-<hash>.jsonl as they come, one file per name and commit."""

    def __init__(self, directory: str, names: tuple, tmp_dir: str, cfg: WriterConfig, retry: RetryPolicy):
        self._directory = directory
        self._names = names
        self._tmp_dir = tmp_dir
        self._cfg = cfg
        self._retry = retry

    def start_bundle(self):
        self._lines: dict[str, list[str]] = {name: [] for name in self._names}
        self._count = 0
        self._oldest = 0.0

    def process(self, item):
        name, record = item
        if not self._count:
            self._oldest = time.monotonic()
        self._lines[name].append(to_json_line(record))
        self._count += 1
        if (self._count >= self._cfg.commit_every_records
                or time.monotonic() - self._oldest >= self._cfg.commit_every_s):
            self._commit()

    def finish_bundle(self):
        report_cpu()
        self._commit()

    def _commit(self):
        for name in self._names:
            if self._lines[name]:
                commit_lines(self._directory, self._tmp_dir, name, self._lines[name], self._retry)
        self._lines = {name: [] for name in self._names}
        self._count = 0


def commit_lines(directory: str, tmp_dir: str, name: str, lines: list[str], retry: RetryPolicy) -> None:
    """DIR/NAME-<hash of the lines>.jsonl, through a temporary file; there already: nothing to do."""
    data = ("\n".join(lines) + "\n").encode("utf-8")
    final = FileSystems.join(directory, f"{name}-{hashlib.sha256(data).hexdigest()[:20]}.jsonl")
    if not FileSystems.exists(final):
        tmp = FileSystems.join(tmp_dir, f"{name}-{uuid.uuid4().hex}.tmp")
        retry_call(lambda: write_then_rename(tmp, final, data), retry, f"commit {name}", on_retry=_count_retry)
    Metrics.counter("write", f"{name}_records").inc(len(lines))
    Metrics.counter("write", "commits").inc()


def _record_key(record) -> str:
    if isinstance(record, str):  # a committed line carried over on resume
        key = json.loads(record).get("key")
    else:
        key = record.key if isinstance(record, Failure) else record.get("key")
    return key if key is not None else to_json_line(record)  # keyless failures spread by content


def _bucket(named, buckets: int):
    """(bucket, (name, JSON line, fresh)): fresh is this run's record, not a line carried over."""
    name, record = named
    digest = hashlib.sha256(_record_key(record).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets, (name, to_json_line(record), not isinstance(record, str))


class _WriteBucket(beam.DoFn):
    """All records of one bucket -> one file per name, lines sorted, in `names` order; `on_fresh` sees
    each of this run's lines (counting here, after a GroupByKey, counts each record once on every
    runner: see WriteFailures)."""

    def __init__(self, directory: str, names: tuple, tmp_dir: str, retry: RetryPolicy,
                 on_fresh: Optional[Callable[[str], None]] = None):
        self._directory = directory
        self._names = names
        self._tmp_dir = tmp_dir
        self._retry = retry
        self._on_fresh = on_fresh

    def finish_bundle(self):
        report_cpu()

    def process(self, bucket_items):
        _bucket_id, items = bucket_items
        by_name: dict[str, list[str]] = {}
        for name, line, fresh in items:
            by_name.setdefault(name, []).append(line)
            if fresh and self._on_fresh:
                self._on_fresh(line)
        for name in self._names:
            if name in by_name:
                commit_lines(self._directory, self._tmp_dir, name, sorted(by_name[name]), self._retry)


class WriteJsonl(beam.PTransform):
    """Records (dicts, Failures, SegmentTexts or ready JSON lines) as DIR/NAME-<hash>.jsonl.

    With several names, the input is (name, record) pairs, and a bucket's (a commit's) files are
    written in that order: records that must never be committed without each other (a file's
    filtered lines and its transcript: same key, same bucket) go through one writer, the one that
    matters on resume (transcripts) last.
    """

    def __init__(self, output_dir: str, name, cfg: WriterConfig, retry: RetryPolicy, work: bool = False,
                 on_fresh: Optional[Callable[[str], None]] = None):
        super().__init__()
        self._on_fresh = on_fresh
        self._work = work
        self._directory = work_path(output_dir) if work else output_dir
        self._tmp = work_path(output_dir, "tmp")
        self._names = (name,) if isinstance(name, str) else tuple(name)
        self._cfg = cfg
        self._retry = retry

    def expand(self, records):
        if len(self._names) == 1:
            name = self._names[0]
            records = records | "Named" >> beam.Map(lambda r: (name, r))
        if self._work:
            return records | "Commit" >> beam.ParDo(_Commit(self._directory, self._names, self._tmp, self._cfg,
                                                            self._retry))
        per_file = self._cfg.commit_every_records
        buckets = (records | "Count" >> beam.combiners.Count.Globally()
                   | "Buckets" >> beam.Map(lambda n: max(1, -(-n // per_file))))
        return (records
                | "Bucket" >> beam.Map(_bucket, beam.pvalue.AsSingleton(buckets))
                | "ByBucket" >> beam.GroupByKey()
                | "WriteBuckets" >> beam.ParDo(_WriteBucket(self._directory, self._names, self._tmp, self._retry,
                                                            self._on_fresh)))


def count_failure(line: str) -> None:
    """The failures namespace of run.json: by stage, files or segments, stage:error_type."""
    failure = json.loads(line)
    Metrics.counter("failures", failure["stage"]).inc()
    Metrics.counter("failures", "files" if failure.get("segment_index") is None else "segments").inc()
    Metrics.counter("failures", f"{failure['stage']}:{failure['error_type']}").inc()


class WriteFailures(beam.PTransform):
    """(each stage's Failures..., failure lines carried over from before): this run's are counted, the
    carried ones not again.

    Counted where they are written, after the writer's GroupByKey: a counting step after a Flatten of
    several stages' outputs is fused into each of those stages under one name, and Flink then reports
    the count of one of them only (measured: a failure record written, its count missing)."""

    def __init__(self, output_dir: str, cfg: WriterConfig, retry: RetryPolicy):
        super().__init__()
        self._writer = WriteJsonl(output_dir, "failures", cfg, retry, on_fresh=count_failure)

    def expand(self, inputs):
        return inputs | "AllFailures" >> beam.Flatten() | "Jsonl" >> self._writer
