"""Admit: one decision per key, in one CoGroupByKey.

- The first row of a key (in index order) goes on; every later row is a failure (stage index, duplicate).
- On --resume, a key that already has a committed transcript (or, with --skip_failed, a file-level
  failure) is skipped whole, and the failure records it had are carried into this run's output; a key
  that is processed again drops its old failure records, since this run writes new ones.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.records import Failure
from transforms.common import FAILURES, GOOD

CARRIED = "carried"


class DuplicateKey(ValueError):
    pass


class AdmitOutputs(NamedTuple):
    rows: beam.PCollection  # IndexRow, one per key
    failures: beam.PCollection  # Failure: bad and duplicate rows
    carried: beam.PCollection  # str: failure records of skipped keys, as committed before


def final_failure(record: dict) -> bool:
    """A failure that settles its key: not a bad or duplicate index row, not a single segment."""
    return record.get("stage") != "index" and record.get("segment_index") is None


class _Decide(beam.DoFn):
    def __init__(self, skip_failed: bool):
        self._skip_failed = skip_failed

    def process(self, grouped):
        key, (entries, committed, old_failures) = grouped
        old = sorted(set(old_failures))  # a resume that was itself interrupted may have carried some twice
        if not entries or committed or (self._skip_failed and any(final_failure(json.loads(f)) for f in old)):
            if entries:
                Metrics.counter("resume", "rows_skipped").inc(len(entries))
            Metrics.counter("resume", "failures_carried").inc(len(old))
            for line in old:
                yield beam.pvalue.TaggedOutput(CARRIED, line)
            return
        Metrics.counter("resume", "failures_replaced").inc(len(old))
        kept = None
        for pos, item in sorted(entries, key=lambda e: e[0]):
            if isinstance(item, Failure):
                yield beam.pvalue.TaggedOutput(FAILURES, item)
            elif kept is None:
                kept = pos
                yield item
            else:
                Metrics.counter("index", "duplicate_rows").inc()
                yield beam.pvalue.TaggedOutput(FAILURES, Failure.of(item, "index", DuplicateKey(
                    f"duplicate key: this row ({pos.describe()}) is skipped, the first one "
                    f"({kept.describe()}) is processed")))


class Admit(beam.PTransform):
    """(rows by key, committed transcript keys, committed failure lines by key) -> AdmitOutputs."""

    def __init__(self, skip_failed: bool = False):
        super().__init__()
        self._skip_failed = skip_failed

    def expand(self, inputs) -> AdmitOutputs:
        rows, committed_keys, old_failures = inputs
        keyless = rows | "Keyless" >> beam.Filter(lambda kv: kv[0] is None)
        keyed = rows | "Keyed" >> beam.Filter(lambda kv: kv[0] is not None)
        out = ((keyed, committed_keys | "MarkDone" >> beam.Map(lambda k: (k, True)), old_failures)
               | "ByKey" >> beam.CoGroupByKey()
               | "Decide" >> beam.ParDo(_Decide(self._skip_failed)).with_outputs(FAILURES, CARRIED, main=GOOD))
        # A row with no key at all (unparseable) cannot be a duplicate or resumed: it fails afresh.
        unkeyed = keyless | "KeylessFailures" >> beam.MapTuple(lambda _k, entry: entry[1])
        failures = (out[FAILURES], unkeyed) | "IndexFailures" >> beam.Flatten()
        return AdmitOutputs(out[GOOD], failures, out[CARRIED])

