"""Segments: speech regions -> segments of at most max_segment_s, plus one FileInfo per file."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.config import SegmentingConfig
from asr_distill.records import SAMPLE_RATE, FileInfo, Segment, VoicedAudio
from asr_distill.segmenting import cut_segments, plan_segments
from transforms.common import run_stage

FILES = "files"


class SegmentOutputs(NamedTuple):
    segments: beam.PCollection  # Segment
    files: beam.PCollection  # (key, FileInfo)
    failures: beam.PCollection


class SegmentDoFn(beam.DoFn):
    def __init__(self, cfg: SegmentingConfig):
        self._cfg = cfg

    def process(self, voiced: VoicedAudio):
        audio = voiced.audio
        plan = plan_segments(voiced.regions, audio.wave, self._cfg)
        segments = cut_segments(audio, plan)
        speech_s = sum(r.duration_s for r in voiced.regions)
        Metrics.counter("segment", "files").inc()
        Metrics.counter("segment", "segments").inc(len(segments))
        Metrics.counter("segment", "segment_ms").inc(int(1000 * sum(len(s.audio) for s in segments) / SAMPLE_RATE))
        if not segments:
            Metrics.counter("segment", "files_without_speech").inc()
        yield beam.pvalue.TaggedOutput(
            FILES, (audio.row.key, FileInfo(audio.row, audio.duration_s, speech_s, len(segments))))
        done = set(audio.row.done_segments)  # --resume: their texts were committed (Admit)
        for segment in segments:
            if segment.index in done:
                Metrics.counter("resume", "segments_reused").inc()
            else:
                yield segment


class CutSegments(beam.PTransform):
    def __init__(self, cfg: SegmentingConfig):
        super().__init__()
        self._cfg = cfg

    def expand(self, voiced) -> SegmentOutputs:
        outputs, failures = run_stage(voiced, "Plan", SegmentDoFn(self._cfg), "segment",
                                      lambda v: v.audio.row, extra_tags=(FILES,), output_type=Segment)
        return SegmentOutputs(outputs.good, outputs[FILES], failures)
