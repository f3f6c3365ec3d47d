"""Resume: what an interrupted run already committed, read back as PCollections.

- transcript keys (OUTPUT/transcripts-*.jsonl): those files are done;
- failure and filtered-segment lines (moved to OUTPUT/_work/<kind>-before/ by the launcher): carried
  or replaced by Admit;
- segment texts (OUTPUT/_work/texts-*.jsonl): segments transcribed before the kill are not sent to the
  model again; their texts join this run's in reassembly.

All of it is joined with CoGroupByKey on the workers: the launcher never holds the keys.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.records import Segment, segment_id
from transforms.common import GOOD
from transforms.write import segment_text_from_json, work_path

REUSED = "reused"


class Committed(NamedTuple):
    transcript_keys: beam.PCollection  # str
    old_lines: beam.PCollection  # (key, (kind, JSON line)), kind in SET_ASIDE
    texts: beam.PCollection  # (segment id, SegmentText)


def transcripts_glob(output: str, done: str = "transcripts") -> str:
    return FileSystems.join(output, f"{done}-*.jsonl")


# Result files a resumed run moves aside and rewrites per key: they hold lines of keys done again.
SET_ASIDE = ("failures", "filtered")


def before_dir(output: str, kind: str) -> str:
    return work_path(output, f"{kind}-before")


def texts_glob(output: str) -> str:
    return work_path(output, "texts-*.jsonl")


def _any(pattern: str) -> bool:
    return bool(FileSystems.match([pattern])[0].metadata_list)


def _lines(p, label: str, pattern: str, resume: bool):
    if resume and _any(pattern):
        return p | label >> beam.io.ReadFromText(pattern)
    return p | label >> beam.Create([])


def _keyed(kind: str):
    def keyed(line: str):
        key = json.loads(line).get("key")
        # Keyless failures (unparseable index lines) are written afresh by every run.
        return [] if key is None else [(key, (kind, line))]
    return keyed


def _keyed_text(line: str):
    text = segment_text_from_json(json.loads(line))
    return segment_id(text.key, text.index), text


def read_committed(p, output: str, resume: bool, done: str = "transcripts") -> Committed:
    """`done`: the name of the committed files whose keys are finished (a pack's are `index-*`)."""
    keys = (_lines(p, "CommittedTranscripts", transcripts_glob(output, done), resume)
            | "TranscriptKeys" >> beam.Map(lambda line: json.loads(line)["key"]))
    old = [_lines(p, f"Committed{kind.title()}", FileSystems.join(before_dir(output, kind), "*.jsonl"), resume)
           | f"{kind.title()}Keys" >> beam.FlatMap(_keyed(kind)) for kind in SET_ASIDE]
    texts = (_lines(p, "CommittedTexts", texts_glob(output), resume)
             | "TextIds" >> beam.Map(_keyed_text))
    return Committed(keys, old | "OldLines" >> beam.Flatten(), texts)


class _Route(beam.DoFn):
    def process(self, grouped):
        _segment_id, (segments, texts) = grouped
        if not segments:
            return
        seg: Segment = segments[0]
        if texts:
            Metrics.counter("resume", "segments_reused").inc()
            yield beam.pvalue.TaggedOutput(REUSED, (seg.key, texts[0]))
        else:
            yield seg


class ReuseTexts(beam.PTransform):
    """(segments, committed texts) -> segments still to transcribe, and (key, SegmentText) reused.

    Grouping by segment id also spreads a long file's segments over the workers, like a Reshuffle.
    """

    def expand(self, inputs):
        segments, texts = inputs
        out = ((segments | "BySegmentId" >> beam.Map(lambda s: (s.segment_id, s)), texts)
               | "Join" >> beam.CoGroupByKey()
               | "Route" >> beam.ParDo(_Route()).with_outputs(REUSED, main=GOOD))
        return out[GOOD], out[REUSED]
