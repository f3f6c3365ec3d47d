"""Resume: what an interrupted run already committed, read back as PCollections.

- transcript keys (OUTPUT/transcripts-*.jsonl): those files are done;
- failure and filtered-segment lines (moved to OUTPUT/_work/<kind>-before/ by the launcher): carried
  or replaced by Admit;
- segment texts (OUTPUT/_work/texts-*.jsonl): segments transcribed before the kill are not sent to the
  model again; their texts join this run's in reassembly.

All of it is joined with the index rows by file key in Admit's CoGroupByKey, on the workers (the
launcher never holds the keys), before any audio is decoded.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.write import segment_text_from_json, work_path


class Committed(NamedTuple):
    transcript_keys: beam.PCollection  # str
    old_lines: beam.PCollection  # (key, (kind, JSON line)), kind in SET_ASIDE
    texts: beam.PCollection  # (file key, SegmentText)


def transcripts_glob(output: str, done: str = "transcripts") -> str:
    return FileSystems.join(output, f"{done}-*.jsonl")


# Result files a resumed run moves aside and rewrites per key: they hold lines of keys done again.
SET_ASIDE = ("failures", "filtered", "term_chunks")


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
    return text.key, text


def read_committed(p, output: str, resume: bool, done: str = "transcripts") -> Committed:
    """`done`: the name of the committed files whose keys are finished (a pack's are `index-*`)."""
    keys = (_lines(p, "CommittedTranscripts", transcripts_glob(output, done), resume)
            | "TranscriptKeys" >> beam.Map(lambda line: json.loads(line)["key"]))
    old = [_lines(p, f"Committed{kind.title()}", FileSystems.join(before_dir(output, kind), "*.jsonl"), resume)
           | f"{kind.title()}Keys" >> beam.FlatMap(_keyed(kind)) for kind in SET_ASIDE]
    texts = (_lines(p, "CommittedTexts", texts_glob(output), resume)
             | "TextKeys" >> beam.Map(_keyed_text))
    return Committed(keys, old | "OldLines" >> beam.Flatten(), texts)
