"""Inference: Beam RunInference over segments with a ModelHandler for the configured ASR backend."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Any, Iterable, NamedTuple, Optional, Sequence

# Beam's RunInference module imports its ModelManager, and with it torch and scipy (2.5 CPU-s in every
# process that builds or runs this step), for a feature this pipeline does not use (use_model_manager).
# Beam treats that module as optional (on ImportError it has no manager, and reports no model memory),
# so it is marked absent here: a launcher on Flink, Spark or DirectRunner's worker processes never
# imports torch, and the workers import it once, for the VAD.
sys.modules.setdefault("apache_beam.ml.inference.model_manager", None)

import apache_beam as beam  # noqa: E402
from apache_beam.io.filesystem import BeamIOError  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference  # noqa: E402

from asr_distill.asr import ASRBackend, Transcription, load_backend, model_label  # noqa: E402
from asr_distill.asr.engine_loop import EngineFailedError  # noqa: E402
from asr_distill.config import InferenceConfig  # noqa: E402
from asr_distill.records import SAMPLE_RATE, Failure, Segment, SegmentText  # noqa: E402
from asr_distill.terms import TermMatcher  # noqa: E402
from transforms.common import FAILURES, GOOD, report_cpu  # noqa: E402
from transforms.terms import TermChunks, wants_audio  # noqa: E402

log = logging.getLogger(__name__)

FAILED_SEGMENTS = "failed_segments"
# A batch that raises one of these becomes failure records (one per segment) and the job goes on.
# Anything else (a missing package, an engine that cannot start or keeps dying: EngineFailedError)
# fails the job: millions of identical failure records help nobody.
BATCH_ERRORS = (RuntimeError, ValueError, TimeoutError, MemoryError)


class ASRModelHandler(ModelHandler[Segment, Any, ASRBackend]):
    """Segments in, one Transcription or exception per segment out; a bad segment sinks only itself."""

    def __init__(self, cfg: InferenceConfig, lost_dir: Optional[str] = None, terms: Optional[tuple] = None):
        """terms: (Glossary, TermsConfig) with --glossary: segments that say a term keep their audio."""
        # Fixed-size batches: BatchElements' adaptive sizing starts at one element and grows, which
        # starves a GPU engine; throughput, not latency, is what a labelling job wants.
        super().__init__(min_batch_size=cfg.batch_size, max_batch_size=cfg.batch_size)
        self._cfg = cfg
        self._model_id = model_label(cfg)
        self._lost_dir = lost_dir
        self._terms = terms
        self._matcher = None

    def load_model(self) -> ASRBackend:
        return load_backend(self._cfg)

    def run_inference(self, batch: Sequence[Segment], model: ASRBackend,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        try:
            results = model.transcribe_segments(list(batch))
        except EngineFailedError:
            self._note_lost(batch)
            raise
        restarts = getattr(model, "take_restarts", None)
        if restarts:
            Metrics.counter("inference", "engine_restarts").inc(restarts())
        audio_ms = Metrics.counter("inference", "audio_ms")
        for seg, res in zip(batch, results):
            if isinstance(res, Transcription):
                audio_ms.inc(int(1000 * len(seg.audio) / SAMPLE_RATE))
        # Past the model a segment is its key, index and times: no audio leaves this step, but for the
        # segments that term chunks are cut from (--glossary), in the next fused step.
        return [PredictionResult(seg if self._keeps_audio(seg, res) else seg.without_audio(), res,
                                 model_id=self._model_id) for seg, res in zip(batch, results)]

    def _keeps_audio(self, seg: Segment, res) -> bool:
        if self._terms is None or not isinstance(res, Transcription):
            return False
        if self._matcher is None:
            self._matcher = TermMatcher(self._terms[0])
        return wants_audio(self._matcher, self._terms[1], seg, res.text)

    def _note_lost(self, batch: Sequence[Segment]) -> None:
        """The job is about to fail: name the segments this batch held, for run.json (lost_segments)."""
        if not self._lost_dir:
            return
        lines = "".join(json.dumps({"key": s.key, "index": s.index, "start_s": s.start_s, "end_s": s.end_s}) + "\n"
                        for s in batch)
        try:
            with FileSystems.create(FileSystems.join(self._lost_dir, f"lost-{uuid.uuid4().hex}.jsonl")) as f:
                f.write(lines.encode())
        except (OSError, BeamIOError) as err:
            log.warning("could not record the lost segments: %s", type(err).__name__)

    def get_num_bytes(self, batch: Sequence[Segment]) -> int:
        # Beam's default pickles the whole batch to measure it: a copy of every segment's audio.
        return sum(seg.audio.nbytes for seg in batch)

    def get_metrics_namespace(self) -> str:
        return "inference"

    # Not Beam's cross-process sharing (share_model_across_processes): it hosts the model inside one
    # SDK worker, which the runner may end at any time. A vllm backend shares the machine's engine
    # servers itself (asr_distill/asr/engine_server.py); any other backend loads once per process.


TERM_AUDIO = "term_audio"


class InferenceOutputs(NamedTuple):
    texts: beam.PCollection  # (key, SegmentText)
    failed_segments: beam.PCollection  # (key, segment index)
    failures: beam.PCollection  # Failure


class _SplitResults(beam.DoFn):
    def finish_bundle(self):
        report_cpu()

    def process(self, keyed):
        _segment_id, result = keyed
        seg: Segment = result.example
        out = result.inference
        if isinstance(out, Transcription):
            Metrics.counter("inference", "segments").inc()
            text = SegmentText(seg.key, seg.index, seg.start_s, seg.end_s, out.text, out.signals, seg.parts,
                               hints=seg.hints)
            if len(seg.audio):  # kept for term chunks (--glossary)
                yield beam.pvalue.TaggedOutput(TERM_AUDIO, (seg, text))
            else:
                yield seg.key, text
        else:
            yield from _segment_failed(seg, type(out).__name__, str(out) or type(out).__name__)


def _segment_failed(seg: Segment, error_type: str, message: str):
    Metrics.counter("inference", "failures").inc()
    yield beam.pvalue.TaggedOutput(FAILED_SEGMENTS, (seg.key, seg.index))
    yield beam.pvalue.TaggedOutput(FAILURES, Failure(
        key=seg.key, uri=seg.uri, stage="inference", error_type=error_type, message=message,
        segment_index=seg.index))


def _crashed_batch(dead_letter):
    batch, (exc_type, exc_repr, _traceback) = dead_letter
    error_type, message = exc_type.__name__, f"unexpected error: {exc_repr}"[:500]
    for _segment_id, seg in batch:
        yield from _segment_failed(seg, error_type, message)


class Transcribe(beam.PTransform):
    def __init__(self, cfg: InferenceConfig, lost_dir: Optional[str] = None, terms: Optional[tuple] = None,
                 output_dir: Optional[str] = None):
        """lost_dir: where a batch that fails the job names its segments (OUTPUT/_work/lost); terms:
        (Glossary, TermsConfig) to cut term chunks (written under output_dir) from the texts' audio."""
        super().__init__()
        self._cfg = cfg
        self._lost_dir = lost_dir
        self._terms = terms
        self._output = output_dir

    def expand(self, segments) -> InferenceOutputs:
        handler = KeyedModelHandler(ASRModelHandler(self._cfg, self._lost_dir, self._terms))
        results, dlq = (segments
                        | "KeyBySegmentId" >> beam.Map(lambda s: (s.segment_id, s))
                        | "RunInference" >> RunInference(handler).with_exception_handling(
                            exc_class=BATCH_ERRORS))
        split = results | "Split" >> beam.ParDo(_SplitResults()).with_outputs(
            FAILURES, FAILED_SEGMENTS, TERM_AUDIO, main=GOOD)
        texts = split[GOOD]
        if self._terms is not None:
            chunked = split[TERM_AUDIO] | "TermChunks" >> beam.ParDo(TermChunks(*self._terms, self._output))
            texts = (texts, chunked) | "AllTexts" >> beam.Flatten()
        crashed = dlq.failed_inferences | "CrashedBatches" >> beam.ParDo(_crashed_batch).with_outputs(
            FAILURES, FAILED_SEGMENTS)
        failed_segments = ((split[FAILED_SEGMENTS], crashed[FAILED_SEGMENTS])
                           | "FailedSegments" >> beam.Flatten())
        failures = (split[FAILURES], crashed[FAILURES]) | "Failures" >> beam.Flatten()
        return InferenceOutputs(texts, failed_segments, failures)
