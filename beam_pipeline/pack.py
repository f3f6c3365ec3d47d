"""`python -m beam_pipeline.pack --input_index=INDEX --output=DIR`: decode once, pack into shards.

Each file is decoded to int16 16 kHz mono and appended to a shard (`DIR/shard-<id>.dat`, about
--shard_mb each); `DIR/index-<id>.jsonl` lists its items (key -> shard, offset, length) and is itself an
index the pipeline reads (`--input_index='DIR/index-*.jsonl'`) without decoding anything. Files that fail
go to `DIR/failures-*.jsonl`. `--resume` finishes an interrupted pack or adds new rows to a finished one.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # before Beam is imported: it logs at import time
    from beam_pipeline.cli import setup_logging

    setup_logging()

import time
from functools import partial
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from asr_distill.config import load_config
from asr_distill.redact import redact
from beam_pipeline.options import DistillOptions
from beam_pipeline.pipeline import UsageError, absolute_local, finish_work, start_work, use_oss_settings
from beam_pipeline.run_record import counter_value, counters, write_json
from transforms.admit import Admit, carried_lines
from transforms.decode import Decode
from transforms.pack import INDEX_PREFIX, PackShards, unindexed_shards
from transforms.read_index import ReadIndex
from transforms.resume import read_committed
from transforms.write import WriteFailures


class PackOptions(PipelineOptions):
    """--shard_mb; --input_index, --output, --config and --resume are the pipeline's (DistillOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--shard_mb", type=int, default=2048, help="pack: shard size to aim for, in MiB.")


def build(p: beam.Pipeline, cfg, input_index: str, output: str, shard_bytes: int, resume: bool) -> None:
    retry = cfg.data.retry_policy()
    before = read_committed(p, output, resume, done="index")
    rows = p | "ReadIndex" >> ReadIndex(input_index, cfg.data.index_format, retry)
    admitted = (rows, before.transcript_keys, before.old_lines, before.texts) | "Admit" >> Admit()
    audio = admitted.rows | "Decode" >> Decode(cfg.audio, retry)
    audio.good | "Pack" >> PackShards(output, shard_bytes, retry)
    failures = [admitted.failures, audio.failures]
    (*failures, carried_lines(admitted.carried, "failures")) | "WriteFailures" >> WriteFailures(output, cfg.writer, retry)


def _delete_unindexed(output: str) -> int:
    orphans = unindexed_shards(output)
    if orphans:
        FileSystems.delete(orphans)
    return len(orphans)


def _record(metrics: dict, wall_s: float, orphans: int) -> dict:
    get = partial(counter_value, metrics)
    rows, skipped, packed, failed = (get("index", "rows"), get("resume", "rows_skipped"), get("pack", "items"),
                                     get("failures", "files"))
    audio_s = get("pack", "audio_ms") / 1000
    return {"counts": {"index_rows": rows, "rows_skipped": skipped, "packed": packed, "failures": failed,
                       "failures_by_type": {k: v for k, v in metrics.get("failures", {}).items() if ":" in k},
                       "shards": get("pack", "shards"), "shard_bytes": get("pack", "shard_bytes"),
                       "unindexed_shards_deleted": orphans},
            "reconciled": rows == skipped + packed + failed,
            "audio_s": round(audio_s, 3), "wall_s": round(wall_s, 3),
            "audio_s_per_wall_s": round(audio_s / wall_s, 1) if wall_s else None}


def run(argv=None, test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    options = PipelineOptions(argv)
    opts = options.view_as(DistillOptions)
    shard_mb = options.view_as(PackOptions).shard_mb
    if not opts.input_index or not opts.output:
        raise UsageError("both --input_index and --output are required")
    opts.input_index, opts.output = absolute_local(opts.input_index), absolute_local(opts.output)
    if shard_mb < 1:
        raise UsageError("--shard_mb must be at least 1")
    cfg = load_config(opts.config)
    use_oss_settings(options, cfg)
    if not FileSystems.match([opts.input_index])[0].metadata_list:
        raise UsageError(f"no index file matches --input_index={redact(opts.input_index)}")
    done = FileSystems.match([FileSystems.join(opts.output, f"{INDEX_PREFIX}*.jsonl")])[0].metadata_list
    if done and not opts.resume:
        raise UsageError(f"--output={redact(opts.output)} already holds a pack ({len(done)} index files): "
                         "pass --resume to finish it or add to it, or choose a new directory")
    t0 = time.monotonic()
    start_work(opts.output, cfg.work_digest(), opts.resume)
    orphans = _delete_unindexed(opts.output)
    p = test_pipeline or beam.Pipeline(options=options)
    build(p, cfg, opts.input_index, opts.output, shard_mb * 2**20, opts.resume)
    result = p.run()
    result.wait_until_finish()
    orphans += _delete_unindexed(opts.output)
    record = {"input_index": redact(opts.input_index), "output": redact(opts.output), "resumed": opts.resume,
              "shard_mb": shard_mb, **_record(counters(result), time.monotonic() - t0, orphans),
              "pipeline_index": redact(FileSystems.join(opts.output, f"{INDEX_PREFIX}*.jsonl"))}
    write_json(FileSystems.join(opts.output, "pack.json"), record)
    finish_work(opts.output)
    c = record["counts"]
    print(f"packed {c['packed']} of {c['index_rows']} rows ({c['rows_skipped']} already packed, "
          f"{c['failures']} failed) into {c['shards']} shards, {record['audio_s'] / 3600:.2f} audio hours; "
          f"read it with --input_index='{record['pipeline_index']}'", flush=True)
    return record


if __name__ == "__main__":
    from beam_pipeline.cli import main

    sys.exit(main(run))
