"""Reassemble: CombinePerKey by file key -> one transcript record per file (or a file-level failure)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.records import Failure
from asr_distill.reassemble import assemble_transcript
from transforms.common import FAILURES, GOOD


class TranscriptOutputs(NamedTuple):
    transcripts: beam.PCollection  # dict (transcript record)
    failures: beam.PCollection  # Failure


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
    def __init__(self, model: str, prompt: Optional[str]):
        self._model = model
        self._prompt = prompt

    def process(self, keyed):
        _key, acc = keyed
        result = assemble_transcript(acc["info"], acc["texts"], acc["failed"], self._model, self._prompt)
        if isinstance(result, Failure):
            Metrics.counter("reassemble", "files_failed").inc()
            yield beam.pvalue.TaggedOutput(FAILURES, result)
        else:
            Metrics.counter("reassemble", f"status_{result['status']}").inc()
            yield result


class Reassemble(beam.PTransform):
    def __init__(self, model: str, prompt: Optional[str]):
        super().__init__()
        self._model = model
        self._prompt = prompt

    def expand(self, inputs) -> TranscriptOutputs:
        files, texts, failed = inputs
        tagged = (
            files | "TagInfo" >> beam.MapTuple(lambda k, v: (k, ("info", v))),
            texts | "TagText" >> beam.MapTuple(lambda k, v: (k, ("texts", v))),
            failed | "TagFailed" >> beam.MapTuple(lambda k, v: (k, ("failed", v))),
        ) | "All" >> beam.Flatten()
        out = (tagged
               | "PerFile" >> beam.CombinePerKey(CollectFile())
               | "Assemble" >> beam.ParDo(_Assemble(self._model, self._prompt)).with_outputs(
                   FAILURES, main=GOOD))
        return TranscriptOutputs(out[GOOD], out[FAILURES])
