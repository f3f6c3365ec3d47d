"""Admit: one decision per key, in one CoGroupByKey.

- The first row of a key (in index order) goes on; every later row is a failure (stage index, duplicate).
- On --resume, a key that already has a committed transcript (or a file-level filtered line: a file
  the reference rule dropped; or, with --skip_failed, a file-level failure) is skipped whole, and the failure and filtered-segment records it had are carried into this
  run's output; a key that is processed again drops its old records, since this run writes new ones.
- On --resume, the segment texts committed for a key that is processed again come out as reused
  texts, and its row lists their indexes (`done_segments`): the segment stage cuts the file as before
  but sends only the other segments to the model. Only rows, keys and texts meet here: decoded audio
  never crosses this shuffle (DESIGN.md, streaming rule).
"""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.records import Failure
from transforms.common import FAILURES, GOOD

CARRIED = "carried"
REUSED = "reused"


class DuplicateKey(ValueError):
    pass


class AdmitOutputs(NamedTuple):
    rows: beam.PCollection  # IndexRow, one per key
    failures: beam.PCollection  # Failure: bad and duplicate rows
    carried: beam.PCollection  # (kind, str): records of skipped keys as committed before (resume.SET_ASIDE)
    reused: beam.PCollection  # (key, SegmentText): texts committed before, for keys processed again


def final_failure(record: dict) -> bool:
    """A failure that settles its key: not a bad or duplicate index row, not a single segment."""
    return record.get("stage") != "index" and record.get("segment_index") is None


class _Decide(beam.DoFn):
    def __init__(self, skip_failed: bool):
        self._skip_failed = skip_failed

    def process(self, grouped):
        key, (entries, committed, old_lines, texts) = grouped
        old = sorted(set(old_lines))  # a resume that was itself interrupted may have carried some twice
        failed = any(kind == "failures" and final_failure(json.loads(line)) for kind, line in old)
        # a file the reference rule dropped whole (a filtered line without a segment index) is done too
        dropped = any(kind == "filtered" and "index" not in json.loads(line) for kind, line in old)
        if not entries or committed or dropped or (self._skip_failed and failed):
            if entries:
                Metrics.counter("resume", "rows_skipped").inc(len(entries))
            for kind, line in old:
                Metrics.counter("resume", f"{kind}_carried").inc()
                yield beam.pvalue.TaggedOutput(CARRIED, (kind, line))
            return
        for kind, _line in old:
            Metrics.counter("resume", f"{kind}_replaced").inc()
        reused = {t.index: t for t in texts}  # a retried commit may have written a text twice
        kept = None
        for pos, item in sorted(entries, key=lambda e: e[0]):
            if isinstance(item, Failure):
                yield beam.pvalue.TaggedOutput(FAILURES, item)
            elif kept is None:
                kept = pos
                for index in sorted(reused):
                    yield beam.pvalue.TaggedOutput(REUSED, (key, reused[index]))
                yield dataclasses.replace(item, done_segments=tuple(sorted(reused))) if reused else item
            else:
                Metrics.counter("index", "duplicate_rows").inc()
                yield beam.pvalue.TaggedOutput(FAILURES, Failure.of(item, "index", DuplicateKey(
                    f"duplicate key: this row ({pos.describe()}) is skipped, the first one "
                    f"({kept.describe()}) is processed")))


class Admit(beam.PTransform):
    """(rows by key, committed transcript keys, (key, (kind, line)) set aside before,
    (key, SegmentText) committed before) -> AdmitOutputs."""

    def __init__(self, skip_failed: bool = False):
        super().__init__()
        self._skip_failed = skip_failed

    def expand(self, inputs) -> AdmitOutputs:
        rows, committed_keys, old_lines, texts = inputs
        keyless = rows | "Keyless" >> beam.Filter(lambda kv: kv[0] is None)
        keyed = rows | "Keyed" >> beam.Filter(lambda kv: kv[0] is not None)
        out = ((keyed, committed_keys | "MarkDone" >> beam.Map(lambda k: (k, True)), old_lines, texts)
               | "ByKey" >> beam.CoGroupByKey()
               | "Decide" >> beam.ParDo(_Decide(self._skip_failed)).with_outputs(FAILURES, CARRIED, REUSED,
                                                                                 main=GOOD))
        # A row with no key at all (unparseable) cannot be a duplicate or resumed: it fails afresh.
        unkeyed = keyless | "KeylessFailures" >> beam.MapTuple(lambda _k, entry: entry[1])
        failures = (out[FAILURES], unkeyed) | "IndexFailures" >> beam.Flatten()
        return AdmitOutputs(out[GOOD], failures, out[CARRIED], out[REUSED])



def carried_lines(carried: beam.PCollection, kind: str) -> beam.PCollection:
    """The carried lines of one kind, as they were committed."""
    return carried | f"Carried{kind.title()}" >> beam.FlatMap(lambda kl: [kl[1]] if kl[0] == kind else [])
