"""ReadIndex: JSONL or Parquet index files (globs allowed) -> IndexRow, bad rows -> failures."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.parquetio import ReadAllFromParquet
from apache_beam.io.textio import ReadAllFromText
from apache_beam.metrics import Metrics

from asr_distill.index import IndexRowError, parse_index_row, parse_json_line, row_identity
from asr_distill.records import Failure
from transforms.common import FAILURES, StageOutputs, fail, run_stage


def index_format(pattern: str, configured: str = "auto") -> str:
    if configured != "auto":
        return configured
    return "parquet" if pattern.lower().endswith((".parquet", ".pq")) else "jsonl"


class _ParseRow(beam.DoFn):
    def process(self, item):
        path, raw = item
        Metrics.counter("index", "rows").inc()
        try:
            if isinstance(raw, str):
                if not raw.strip():
                    return
                raw = parse_json_line(raw)
            yield parse_index_row(raw, path)
        except IndexRowError as err:
            key, uri = row_identity(raw)
            Metrics.counter("index", "failures").inc()
            yield beam.pvalue.TaggedOutput(
                FAILURES, Failure(key=key, uri=uri, stage="index", error_type=type(err).__name__,
                                  message=f"{err} ({path})"))


class ReadIndex(beam.PTransform):
    def __init__(self, pattern: str, fmt: str = "auto"):
        super().__init__()
        self._pattern = pattern
        self._fmt = index_format(pattern, fmt)

    def expand(self, pbegin) -> StageOutputs:
        patterns = pbegin | "Pattern" >> beam.Create([self._pattern])
        if self._fmt == "parquet":
            raw = patterns | "ReadParquet" >> ReadAllFromParquet(with_filename=True)
        else:
            raw = patterns | "ReadJsonl" >> ReadAllFromText(with_filename=True)
        outputs, failures = run_stage(raw, "Parse", _ParseRow(), "index", lambda item: None)
        return StageOutputs(outputs.good, failures)
