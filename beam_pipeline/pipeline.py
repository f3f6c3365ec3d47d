"""Pipeline assembly: `build(...)` wires the stages; `run(argv)` parses options, runs, writes run.json."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from asr_distill.asr import model_label, prompt_label
from asr_distill.config import Config, ConfigError, load_config
from beam_pipeline.options import DistillOptions
from beam_pipeline.run_record import build_run_record, counters, format_summary, write_json
from transforms.decode import Decode
from transforms.inference import Transcribe
from transforms.read_index import ReadIndex
from transforms.reassemble import Reassemble
from transforms.segments import CutSegments
from transforms.vad import DetectSpeech
from transforms.write import WriteFailures, WriteJsonl

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("transcripts", "failures", "segments")


class UsageError(Exception):
    """A problem with how the pipeline was called; the message says what to change."""


def _segment_row(seg) -> dict:
    return {"key": seg.key, "index": seg.index, "start_s": seg.start_s, "end_s": seg.end_s}


def build(p: beam.Pipeline, cfg: Config, input_index: str, output: str,
          stop_after: Optional[str] = None) -> dict[str, beam.PCollection]:
    """The whole graph. Returns the PCollections that get written, by output kind."""
    shards = cfg.writer.num_shards
    rows = p | "ReadIndex" >> ReadIndex(input_index, cfg.data.index_format)
    audio = rows.good | "Decode" >> Decode(cfg.audio)
    voiced = audio.good | "VAD" >> DetectSpeech(cfg.vad)
    cut = voiced.good | "Segments" >> CutSegments(cfg.segmenting)
    failures = [rows.failures, audio.failures, voiced.failures, cut.failures]
    written = {}
    if stop_after == "segment":
        written["segments"] = cut.segments | "SegmentRows" >> beam.Map(_segment_row)
        written["segments"] | "WriteSegments" >> WriteJsonl(output, "segments", shards)
    else:
        # Break fusion: a long file's segments spread over all inference workers.
        segments = cut.segments | "Spread" >> beam.Reshuffle()
        asr = segments | "Inference" >> Transcribe(cfg.inference)
        done = ((cut.files, asr.texts, asr.failed_segments)
                | "Reassemble" >> Reassemble(model_label(cfg.inference), prompt_label(cfg.inference)))
        failures += [asr.failures, done.failures]
        written["transcripts"] = done.transcripts
        done.transcripts | "WriteTranscripts" >> WriteJsonl(output, "transcripts", shards)
    written["failures"] = failures | "AllFailures" >> beam.Flatten()
    written["failures"] | "WriteFailures" >> WriteFailures(output, shards)
    return written


def _check_inputs(opts: DistillOptions) -> None:
    if not opts.input_index or not opts.output:
        raise UsageError("both --input_index and --output are required")
    if opts.resume:
        raise UsageError("--resume is not available yet: write to a new --output directory")
    if not FileSystems.match([opts.input_index])[0].metadata_list:
        raise UsageError(f"no index file matches --input_index={opts.input_index}")
    existing = [m.path for kind in OUTPUT_KINDS
                for m in FileSystems.match([FileSystems.join(opts.output, f"{kind}-*.jsonl")])[0].metadata_list]
    if existing:
        raise UsageError(f"--output={opts.output} already holds results ({len(existing)} files); "
                         "choose a new directory")


def run(argv=None, test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Runs the job and returns the run record that was written to OUTPUT/run.json."""
    options = PipelineOptions(argv)
    opts = options.view_as(DistillOptions)
    _check_inputs(opts)
    cfg = load_config(opts.config).with_backend(opts.backend)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    p = test_pipeline or beam.Pipeline(options=options)
    build(p, cfg, opts.input_index, opts.output, opts.stop_after)
    result = p.run()
    result.wait_until_finish()
    record = build_run_record(
        counters(result), wall_s=time.monotonic() - t0, started_at=started_at,
        input_index=opts.input_index, output=opts.output, runner=str(runner), stop_after=opts.stop_after,
        model=model_label(cfg.inference), backend=cfg.inference.backend,
        config=cfg.model_dump(mode="json"), config_digest=cfg.digest())
    write_json(FileSystems.join(opts.output, "run.json"), record)
    print(format_summary(record), flush=True)
    return record


__all__ = ["build", "run", "UsageError", "ConfigError"]
