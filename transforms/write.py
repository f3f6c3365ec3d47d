"""Write: sharded JSONL files in the output directory (any FileSystems scheme)."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.records import Failure


def to_json_line(record) -> str:
    if isinstance(record, Failure):
        record = record.to_json()
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def _count_failure(failure: Failure) -> Failure:
    Metrics.counter("failures", failure.stage).inc()
    Metrics.counter("failures", "files" if failure.segment_index is None else "segments").inc()
    return failure


class WriteJsonl(beam.PTransform):
    """Writes DIR/NAME-SSSSS-of-NNNNN.jsonl."""

    def __init__(self, output_dir: str, name: str, num_shards: int = 0):
        super().__init__()
        self._prefix = FileSystems.join(output_dir, name)
        self._num_shards = num_shards

    def expand(self, records):
        return (records
                | "ToJson" >> beam.Map(to_json_line)
                | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl",
                                                 num_shards=self._num_shards, shard_name_template=None))


class WriteFailures(beam.PTransform):
    def __init__(self, output_dir: str, num_shards: int = 0):
        super().__init__()
        self._output_dir = output_dir
        self._num_shards = num_shards

    def expand(self, failures):
        return (failures
                | "Count" >> beam.Map(_count_failure)
                | "Jsonl" >> WriteJsonl(self._output_dir, "failures", self._num_shards))
