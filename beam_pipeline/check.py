"""`python -m beam_pipeline.check OUTPUT`: exit 0 only if OUTPUT holds a finished, reconciled run.

For CI-triggered jobs (launch/ci/): after the job, this decides whether the workflow passes. Works on
any FileSystems path (local, oss://, gs://, ...).
"""

from __future__ import annotations

import argparse
import json
import sys

from apache_beam.io.filesystems import FileSystems

from asr_distill.redact import redact
from transforms.write import WORK_DIR


def problems(output: str, max_failure_rate: float) -> tuple[list[str], dict]:
    run_json = FileSystems.join(output, "run.json")
    if not FileSystems.exists(run_json):
        return [f"no run.json in {redact(output)}: the job did not finish"], {}
    with FileSystems.open(run_json) as f:
        record = json.load(f)
    if record.get("status") == "failed":
        return [f"the job failed: {record.get('error')} ({record.get('segments_lost_count')} segments lost: "
                "run.json segments_lost)"], {}
    found = []
    if FileSystems.exists(FileSystems.join(output, WORK_DIR)):
        found.append(f"{WORK_DIR}/ is still there: the last run was interrupted (rerun with --resume)")
    if record.get("reconciled") is not True:
        found.append("run.json is not reconciled: index rows != skipped + transcripts + failed files")
    segments = record.get("segment_accounting") or {}
    if record.get("segments_reconciled") is False:
        found.append(f"segments are not accounted for: cut {segments.get('cut')} != transcribed "
                     f"{segments.get('transcribed')} + failed {segments.get('failed')} + reused "
                     f"{segments.get('reused')}, lost {segments.get('lost')} (failures-*.jsonl: inference:SegmentLost)")
    counts = record.get("counts", {})
    rows = counts.get("index_rows", 0) - record.get("resume", {}).get("rows_skipped", 0)
    rate = counts.get("failures", 0) / rows if rows else 0.0
    if rate > max_failure_rate:
        found.append(f"{rate:.1%} of the rows failed (more than --max_failure_rate={max_failure_rate:.1%}); "
                     f"by stage: {counts.get('failures_by_stage')}")
    return found, record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beam_pipeline.check", description=__doc__.splitlines()[0])
    ap.add_argument("output", help="the job's --output directory")
    ap.add_argument("--max_failure_rate", type=float, default=1.0,
                    help="fail when more than this fraction of the rows processed ended as failures")
    args = ap.parse_args(argv)
    found, record = problems(args.output, args.max_failure_rate)
    if record:
        c = record["counts"]
        print(f"{redact(args.output)}: rows {c['index_rows']}, transcripts {c['transcripts']}, failed files "
              f"{c['failures']}, runner {record.get('runner')}, {record.get('wall_s')} s")
    for problem in found:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
