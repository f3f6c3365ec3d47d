"""Write: results are committed as they come, in JSONL files named by their content.

A worker buffers records and commits them every `commit_every_records` records, every `commit_every_s`
seconds and at the end of each bundle: the lines go to a temporary file under OUTPUT/_work/tmp and are
renamed to OUTPUT/NAME-<hash of the lines>.jsonl. A job killed at any moment leaves only whole files,
and a bundle the runner retries with the same records commits the same name again instead of a copy.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.config import WriterConfig
from asr_distill.records import Failure, SegmentText
from asr_distill.retry import RetryPolicy, retry_call

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
    return {"key": t.key, "index": t.index, "start_s": t.start_s, "end_s": t.end_s, "text": t.text,
            "signals": t.signals, "parts": [list(p) for p in t.parts]}


def segment_text_from_json(d: dict) -> SegmentText:
    return SegmentText(d["key"], d["index"], d["start_s"], d["end_s"], d["text"], d["signals"],
                       tuple(tuple(p) for p in d["parts"]))


def write_then_rename(tmp: str, final: str, data: bytes) -> None:
    with FileSystems.create(tmp, mime_type="application/jsonl") as f:
        f.write(data)
    FileSystems.rename([tmp], [final])


class _Commit(beam.DoFn):
    """(name, record) pairs -> DIR/NAME-<hash>.jsonl, one file per name and commit, in `names` order."""

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
        self._commit()

    def _commit(self):
        for name in self._names:
            lines = self._lines[name]
            if lines:
                self._commit_file(name, lines)
        self._lines = {name: [] for name in self._names}
        self._count = 0

    def _commit_file(self, name: str, lines: list[str]):
        data = ("\n".join(lines) + "\n").encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()[:20]
        final = FileSystems.join(self._directory, f"{name}-{digest}.jsonl")
        tmp = FileSystems.join(self._tmp_dir, f"{name}-{uuid.uuid4().hex}.tmp")
        retry_call(lambda: write_then_rename(tmp, final, data), self._retry, f"commit {name}",
                   on_retry=lambda _err: Metrics.counter("write", "retries").inc())
        Metrics.counter("write", f"{name}_records").inc(len(lines))
        Metrics.counter("write", "commits").inc()


class WriteJsonl(beam.PTransform):
    """Commits records (dicts, Failures, SegmentTexts or ready JSON lines) as DIR/NAME-<hash>.jsonl.

    With several names, the input is (name, record) pairs and each commit writes the names' files in
    that order: records that must never be committed without each other go through one writer, the
    one that matters on resume (transcripts) last.
    """

    def __init__(self, output_dir: str, name, cfg: WriterConfig, retry: RetryPolicy, work: bool = False):
        super().__init__()
        self._directory = work_path(output_dir) if work else output_dir
        self._tmp = work_path(output_dir, "tmp")
        self._names = (name,) if isinstance(name, str) else tuple(name)
        self._cfg = cfg
        self._retry = retry

    def expand(self, records):
        if len(self._names) == 1:
            name = self._names[0]
            records = records | "Named" >> beam.Map(lambda r: (name, r))
        return records | "Commit" >> beam.ParDo(_Commit(self._directory, self._names, self._tmp, self._cfg,
                                                        self._retry))


def _count_failure(failure: Failure) -> Failure:
    Metrics.counter("failures", failure.stage).inc()
    Metrics.counter("failures", "files" if failure.segment_index is None else "segments").inc()
    Metrics.counter("failures", f"{failure.stage}:{failure.error_type}").inc()
    return failure


class WriteFailures(beam.PTransform):
    """This run's Failures (counted) and failure lines carried over from before (not counted again)."""

    def __init__(self, output_dir: str, cfg: WriterConfig, retry: RetryPolicy):
        super().__init__()
        self._args = (output_dir, "failures", cfg, retry)

    def expand(self, inputs):
        failures, carried = inputs
        counted = failures | "Count" >> beam.Map(_count_failure)
        return (counted, carried) | "WithCarried" >> beam.Flatten() | "Jsonl" >> WriteJsonl(*self._args)
