"""Reassemble: CombinePerKey by file key -> one transcript record per file (or a file-level failure)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.config import FiltersConfig
from asr_distill.records import Failure
from asr_distill.reassemble import assemble_transcript, lost_segments
from transforms.common import FAILURES, GOOD, report_cpu


FILTERED = "filtered"


class TranscriptOutputs(NamedTuple):
    transcripts: beam.PCollection  # dict (transcript record)
    failures: beam.PCollection  # Failure
    filtered: beam.PCollection  # dict: a segment dropped by the quality rules


class CollectFile(beam.CombineFn):
    """Gathers a file's FileInfo, segment texts and failed segment indexes, in any arrival order."""

    def create_accumulator(self):
        return {"info": None, "texts": [], "failed": []}

    def add_input(self, acc, item):
        kind, value = item
        if kind == "info":
            acc["info"] = value
        else:
            acc[kind].append(value)
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for acc in accs:
            out["info"] = out["info"] or acc["info"]
            out["texts"].extend(acc["texts"])
            out["failed"].extend(acc["failed"])
        return out

    def extract_output(self, acc):
        return acc


class _Assemble(beam.DoFn):
    def __init__(self, model: str, prompt: Optional[str], filters: FiltersConfig):
        self._model = model
        self._prompt = prompt
        self._filters = filters

    def finish_bundle(self):
        report_cpu()

    def process(self, keyed):
        _key, acc = keyed
        if acc["info"] is None:  # texts for a file this run did not cut (cannot happen: same config)
            Metrics.counter("reassemble", "texts_without_file").inc(len(acc["texts"]))
            return
        for failure in lost_segments(acc["info"], acc["texts"], acc["failed"]):
            Metrics.counter("reassemble", "segments_lost").inc()
            yield beam.pvalue.TaggedOutput(FAILURES, failure)
        result, dropped = assemble_transcript(acc["info"], acc["texts"], acc["failed"], self._model,
                                              self._prompt, self._filters)
        if isinstance(result, Failure):
            Metrics.counter("reassemble", "files_failed").inc()
            yield beam.pvalue.TaggedOutput(FAILURES, result)
            return
        Metrics.counter("reassemble", f"status_{result['status']}").inc()
        for segment in result["segments"]:
            _count_quality(segment["quality_flags"], "flagged")
        for line in dropped:
            _count_quality(line["quality_flags"], "dropped")
            yield beam.pvalue.TaggedOutput(FILTERED, line)
        if result["reference_wer"] is not None:
            Metrics.counter("quality", "files_with_reference").inc()
        if result["quality_flags"] and self._filters.action == "drop":
            # the whole file leaves transcripts-*.jsonl: a file-level line (no segment index) in filtered
            _count_quality(result["quality_flags"], "dropped", "files")
            yield beam.pvalue.TaggedOutput(FILTERED, result)
            return
        _count_quality(result["quality_flags"], "flagged", "files")
        yield result


def _count_quality(reasons: list[str], what: str, unit: str = "segments") -> None:
    if reasons:
        Metrics.counter("quality", f"{unit}_{what}").inc()
    for reason in reasons:
        Metrics.counter("quality", f"{what}:{reason}").inc()


class Reassemble(beam.PTransform):
    def __init__(self, model: str, prompt: Optional[str], filters: FiltersConfig = FiltersConfig()):
        super().__init__()
        self._model = model
        self._prompt = prompt
        self._filters = filters

    def expand(self, inputs) -> TranscriptOutputs:
        files, texts, failed = inputs
        tagged = (
            files | "TagInfo" >> beam.MapTuple(lambda k, v: (k, ("info", v))),
            texts | "TagText" >> beam.MapTuple(lambda k, v: (k, ("texts", v))),
            failed | "TagFailed" >> beam.MapTuple(lambda k, v: (k, ("failed", v))),
        ) | "All" >> beam.Flatten()
        out = (tagged
               | "PerFile" >> beam.CombinePerKey(CollectFile())
               | "Assemble" >> beam.ParDo(_Assemble(self._model, self._prompt, self._filters)).with_outputs(
                   FAILURES, FILTERED, main=GOOD))
        return TranscriptOutputs(out[GOOD], out[FAILURES], out[FILTERED])
