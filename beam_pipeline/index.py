"""`python -m beam_pipeline.index ROOT --output INDEX.parquet [--probe]`: index the media under ROOT.

ROOT is a local directory or a prefix of any FileSystems scheme (`oss://bucket/calls/`). Each media
file (by extension, then by its first bytes) becomes a row: key (path under ROOT without extension),
uri, size_bytes, and with --probe duration_s, codec, sample_rate, channels. INDEX is Parquet, or JSONL
when it ends in .jsonl; files with a media extension that are not media are listed, as failure records,
in INDEX's name with `.failures.jsonl` for its extension. Itself a Beam pipeline: any Beam flag applies.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import time
from typing import Optional

if __name__ == "__main__":  # before Beam is imported: it logs at import time
    from beam_pipeline.cli import setup_logging

    setup_logging()

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from asr_distill.config import load_config
from asr_distill.redact import redact
from beam_pipeline.pipeline import UsageError, use_oss_settings
from beam_pipeline.run_record import counters
from transforms.list_media import ListMedia
from transforms.write import to_json_line

_BASE = [("key", pa.string()), ("uri", pa.string()), ("size_bytes", pa.int64())]
_PROBED = [("duration_s", pa.float64()), ("codec", pa.string()), ("sample_rate", pa.int64()),
           ("channels", pa.int64())]


def schema(probed: bool) -> pa.Schema:
    return pa.schema(_BASE + (_PROBED if probed else []))


def failures_path(output: str) -> str:
    stem, _ext = posixpath.splitext(output)
    return stem + ".failures.jsonl"


def _is_jsonl(output: str) -> bool:
    return output.lower().endswith((".jsonl", ".json"))


def build(p: beam.Pipeline, root: str, output: str, probed: bool, retry) -> None:
    listed = p | "ListMedia" >> ListMedia(root, probed, retry)
    one_file = dict(num_shards=1, shard_name_template="")
    if _is_jsonl(output):
        listed.rows | "RowsJson" >> beam.Map(to_json_line) | "WriteIndex" >> beam.io.WriteToText(output, **one_file)
    else:
        listed.rows | "WriteIndex" >> beam.io.WriteToParquet(output, schema(probed), **one_file)
    (listed.failures | "FailureJson" >> beam.Map(to_json_line)
     | "WriteFailures" >> beam.io.WriteToText(failures_path(output), **one_file))


def _parse(argv) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(prog="python -m beam_pipeline.index", description=__doc__.splitlines()[0])
    ap.add_argument("root", help="local directory or prefix such as oss://bucket/calls/")
    ap.add_argument("--output", required=True, help="the index to write: .parquet (default) or .jsonl")
    ap.add_argument("--probe", action="store_true", help="add duration_s, codec, sample_rate, channels (PyAV)")
    ap.add_argument("--index_config", default=None, help="YAML config; its data section (OSS, retries) applies")
    return ap.parse_known_args(argv)


def run(argv=None, test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    args, beam_args = _parse(argv)
    options = PipelineOptions(beam_args)
    cfg = load_config(args.index_config)
    use_oss_settings(options, cfg)
    root = args.root if FileSystems.get_scheme(args.root) else os.path.abspath(args.root)
    if not FileSystems.exists(root):
        raise UsageError(f"ROOT {redact(args.root)} does not exist")
    t0 = time.monotonic()
    p = test_pipeline or beam.Pipeline(options=options)
    build(p, root, args.output, args.probe, cfg.data.retry_policy())
    result = p.run()
    result.wait_until_finish()
    c = counters(result).get("index", {})
    summary = {"files_listed": c.get("files_listed", 0), "media_files": c.get("media_files", 0),
               "not_media": c.get("files_not_media", 0), "rejected": c.get("files_rejected", 0),
               "wall_s": round(time.monotonic() - t0, 3)}
    print(f"{summary['media_files']} media files indexed in {redact(args.output)} ({summary['files_listed']} "
          f"listed, {summary['not_media']} not media by name, {summary['rejected']} rejected: see "
          f"{redact(failures_path(args.output))})", flush=True)
    return summary


if __name__ == "__main__":
    from beam_pipeline.cli import main

    sys.exit(main(run))
