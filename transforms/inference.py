"""Inference: Beam RunInference over segments with a ModelHandler for the configured ASR backend."""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from asr_distill.asr import ASRBackend, Transcription, load_backend, transcribe_isolating
from asr_distill.config import InferenceConfig
from asr_distill.records import Failure, Segment, SegmentText
from transforms.common import FAILURES, GOOD

FAILED_SEGMENTS = "failed_segments"


class ASRModelHandler(ModelHandler[Segment, Any, ASRBackend]):
    """Segments in, one Transcription or exception per segment out; a bad segment sinks only itself."""

    def __init__(self, cfg: InferenceConfig):
        super().__init__(min_batch_size=1, max_batch_size=cfg.batch_size)
        self._cfg = cfg

    def load_model(self) -> ASRBackend:
        return load_backend(self._cfg)

    def run_inference(self, batch: Sequence[Segment], model: ASRBackend,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        results = transcribe_isolating(model, batch)
        return [PredictionResult(seg, res, model_id=model.model_name) for seg, res in zip(batch, results)]

    def get_metrics_namespace(self) -> str:
        return "inference"


class InferenceOutputs(NamedTuple):
    texts: beam.PCollection  # (key, SegmentText)
    failed_segments: beam.PCollection  # (key, segment index)
    failures: beam.PCollection  # Failure


class _SplitResults(beam.DoFn):
    def process(self, keyed):
        _segment_id, result = keyed
        seg: Segment = result.example
        out = result.inference
        if isinstance(out, Transcription):
            Metrics.counter("inference", "segments").inc()
            Metrics.counter("inference", "audio_ms").inc(int(1000 * seg.duration_s))
            yield seg.key, SegmentText(seg.key, seg.index, seg.start_s, seg.end_s, out.text, out.signals)
        else:
            yield from _segment_failed(seg, type(out).__name__, str(out) or type(out).__name__)


def _segment_failed(seg: Segment, error_type: str, message: str):
    Metrics.counter("inference", "failures").inc()
    yield beam.pvalue.TaggedOutput(FAILED_SEGMENTS, (seg.key, seg.index))
    yield beam.pvalue.TaggedOutput(FAILURES, Failure(
        key=seg.key, uri=seg.uri, stage="inference", error_type=error_type, message=message,
        segment_index=seg.index))


def _crashed_batch(dead_letter):
    batch, err = dead_letter
    if isinstance(err, tuple):  # (type, repr, traceback) from the exception-handling wrapper
        error_type, message = err[0].__name__, f"unexpected error: {err[1]}"[:500]
    else:
        error_type, message = type(err).__name__, str(err)[:500]
    for _segment_id, seg in batch:
        yield from _segment_failed(seg, error_type, message)


class Transcribe(beam.PTransform):
    def __init__(self, cfg: InferenceConfig):
        super().__init__()
        self._cfg = cfg

    def expand(self, segments) -> InferenceOutputs:
        handler = KeyedModelHandler(ASRModelHandler(self._cfg))
        results, dlq = (segments
                        | "KeyBySegmentId" >> beam.Map(lambda s: (s.segment_id, s))
                        | "RunInference" >> RunInference(handler).with_exception_handling())
        split = results | "Split" >> beam.ParDo(_SplitResults()).with_outputs(
            FAILURES, FAILED_SEGMENTS, main=GOOD)
        crashed = dlq.failed_inferences | "CrashedBatches" >> beam.ParDo(_crashed_batch).with_outputs(
            FAILURES, FAILED_SEGMENTS)
        failed_segments = ((split[FAILED_SEGMENTS], crashed[FAILED_SEGMENTS])
                           | "FailedSegments" >> beam.Flatten())
        failures = (split[FAILURES], crashed[FAILURES]) | "Failures" >> beam.Flatten()
        return InferenceOutputs(split[GOOD], failed_segments, failures)
