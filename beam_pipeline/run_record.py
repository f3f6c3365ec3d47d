"""run.json: what a run did, from the pipeline's Beam metrics, plus a short printed summary."""

from __future__ import annotations

import json
import platform
from collections import defaultdict
from functools import partial
from importlib import metadata
from typing import Any

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from asr_distill import __version__
from asr_distill.cost import format_cost

_PACKAGES = ("apache-beam", "av", "silero-vad", "torch", "onnxruntime", "faster-whisper", "ctranslate2",
             "pydantic", "numpy")


def counter_value(metrics: dict[str, dict[str, int]], namespace: str, name: str) -> int:
    return metrics.get(namespace, {}).get(name, 0)


def counters(result) -> dict[str, dict[str, int]]:
    """namespace -> name -> value, summed over steps."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in result.metrics().query(MetricsFilter())["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.namespace][c.key.metric.name] += int(value or 0)
    return {ns: dict(names) for ns, names in out.items()}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "asr_distill": __version__}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def build_run_record(metrics: dict[str, dict[str, int]], *, wall_s: float, started_at: str,
                     input_index: str, output: str, runner: str, stop_after, model: str, backend: str,
                     config: dict, config_digest: str, resumed: bool = False,
                     environment: dict | None = None) -> dict[str, Any]:
    get = partial(counter_value, metrics)
    status = {s: get("reassemble", f"status_{s}") for s in ("ok", "no_speech", "partial")}
    by_kind = metrics.get("failures", {})
    failures_by_stage = {k: v for k, v in by_kind.items() if k not in ("files", "segments") and ":" not in k}
    failures_by_type = {k: v for k, v in sorted(by_kind.items()) if ":" in k}
    skipped = get("resume", "rows_skipped")
    file_failures = get("failures", "files")
    rows = get("index", "rows")
    audio_s = get("decode", "audio_ms") / 1000
    finished = stop_after == "segment"
    files_dropped = get("quality", "files_dropped")  # whole files filtered-*.jsonl holds instead
    transcripts = sum(status.values()) - files_dropped
    files_done = get("segment", "files") if finished else transcripts + files_dropped
    segments = segment_accounting(metrics, finished)
    return {
        "pipeline_version": __version__,
        "started_at": started_at,
        "wall_s": round(wall_s, 3),
        "input_index": input_index,
        "output": output,
        "runner": runner,
        "environment": environment,
        "stop_after": stop_after,
        "counts": {
            "index_rows": rows,
            "files_decoded": get("decode", "files"),
            "segments": get("segment", "segments"),
            "segments_transcribed": get("inference", "segments"),
            "segments_failed": segments["failed"],
            "segments_lost": segments["lost"],
            "transcripts": transcripts,
            "files_dropped": files_dropped,
            "status": status,
            "failures": file_failures,
            "segment_failures": get("failures", "segments"),
            "failures_by_stage": failures_by_stage,
            "failures_by_type": failures_by_type,
        },
        "resume": {
            "resumed": resumed,
            "rows_skipped": skipped,
            "segments_reused": get("resume", "segments_reused"),
            "failures_carried": get("resume", "failures_carried"),
            "failures_replaced": get("resume", "failures_replaced"),
            "filtered_carried": get("resume", "filtered_carried"),
            "filtered_replaced": get("resume", "filtered_replaced"),
        },
        "quality": quality_summary(metrics, (config.get("filters") or {}).get("action")),
        "retries": {"read": get("read", "retries"), "write": get("write", "retries")},
        "stages": stage_table(metrics),
        # Every index row: skipped as already done, or one transcript (or a file-level filtered line),
        # or one file-level failure.
        "reconciled": rows == skipped + files_done + file_failures,
        # Every segment cut: a text, a segment failure with its cause, or reused; none lost.
        "segments_reconciled": segments["reconciled"],
        "segment_accounting": segments,
        "audio_s": round(audio_s, 3),
        "speech_s": round(get("vad", "speech_ms") / 1000, 3),
        "segment_audio_s": round(get("segment", "segment_ms") / 1000, 3),
        "throughput": {
            "audio_s_per_wall_s": round(audio_s / wall_s, 3) if wall_s else None,
            "files_per_wall_s": round(get("decode", "files") / wall_s, 3) if wall_s else None,
        },
        "model": None if finished else model,
        "backend": None if finished else backend,
        "config_digest": config_digest,
        "config": config,
        "versions": versions(),
        # Every Beam counter of the job, by namespace (what the Pushgateway gets, too).
        "metrics": {ns: dict(sorted(names.items())) for ns, names in sorted(metrics.items())},
    }


def segment_accounting(metrics: dict[str, dict[str, int]], stop_after_segment: bool = False) -> dict:
    """cut = transcribed + failed + reused (+ lost, which must be 0); None when nothing was transcribed."""
    get = partial(counter_value, metrics)
    lost = get("reassemble", "segments_lost")
    out = {"cut": get("segment", "segments"), "transcribed": get("inference", "segments"),
           "failed": get("failures", "segments") - lost, "reused": get("resume", "segments_reused"), "lost": lost,
           "engine_restarts": get("inference", "engine_restarts")}
    out["reconciled"] = None if stop_after_segment else (
        lost == 0 and out["cut"] == out["transcribed"] + out["failed"] + out["reused"])
    return out


def quality_summary(metrics: dict[str, dict[str, int]], action) -> dict:
    """Segments the quality rules flagged (kept) or dropped (to filtered-*.jsonl), by rule."""
    q = metrics.get("quality", {})
    return {"action": action, "segments_flagged": q.get("segments_flagged", 0),
            "segments_dropped": q.get("segments_dropped", 0),
            "files_with_reference": q.get("files_with_reference", 0),
            "files_flagged": q.get("files_flagged", 0), "files_dropped": q.get("files_dropped", 0),
            "by_reason": {k: v for k, v in sorted(q.items()) if ":" in k}}


def write_json(path: str, record: dict) -> None:
    with FileSystems.create(path, mime_type="application/json") as f:
        f.write((json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode())


def stage_table(metrics: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    """Per stage: what went in or came out, and how many failures it recorded."""
    get = partial(counter_value, metrics)
    fails = metrics.get("failures", {})
    return {
        "index": {"rows": get("index", "rows"), "failures": fails.get("index", 0)},
        "read": {"failures": fails.get("read", 0)},
        "decode": {"files": get("decode", "files"), "audio_s": get("decode", "audio_ms") / 1000,
                   "failures": fails.get("decode", 0)},
        "vad": {"files": get("vad", "files"), "speech_s": get("vad", "speech_ms") / 1000,
                "failures": fails.get("vad", 0)},
        "segment": {"files": get("segment", "files"), "segments": get("segment", "segments"),
                    "failures": fails.get("segment", 0)},
        "inference": {"segments": get("inference", "segments"), "audio_s": get("inference", "audio_ms") / 1000,
                      "failures": fails.get("inference", 0)},
        "reassemble": {"files": sum(v for k, v in metrics.get("reassemble", {}).items()
                                    if k.startswith("status_"))},
    }


def format_summary(record: dict) -> str:
    c = record["counts"]
    st = c["status"]
    rows = []
    for stage, figures in record["stages"].items():
        if record["stop_after"] and stage in ("inference", "reassemble"):
            continue
        cells = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        rows.append(f"  {stage:<11}{cells}")
    head = (f"rows {c['index_rows']} -> " + (f"{c['segments']} segments written" if record["stop_after"] else
            f"transcripts {c['transcripts']} (ok {st['ok']}, no_speech {st['no_speech']}, "
            f"partial {st['partial']})") + f", failed files {c['failures']}"
            + (f", dropped files {c['files_dropped']}" if c.get("files_dropped") else ""))
    if record["resume"]["resumed"]:
        r = record["resume"]
        head += (f"; resumed: {r['rows_skipped']} rows already done, {r['segments_reused']} segments reused, "
                 f"{r['failures_carried']} failure records carried over")
    q = record.get("quality") or {}
    if q.get("segments_flagged") or q.get("segments_dropped"):
        rows.append(f"  {'quality':<11}flagged {q['segments_flagged']}, dropped {q['segments_dropped']} "
                    f"({', '.join(f'{k} {v}' for k, v in q['by_reason'].items())})")
    if q.get("files_with_reference"):
        wer_max = ((record.get("config") or {}).get("filters") or {}).get("reference_wer_max")
        rows.append(f"  {'reference':<11}files {q['files_with_reference']} with a reference text; " + (
            "reference_wer_max off" if wer_max is None else
            f"above reference_wer_max {wer_max}: flagged {q['files_flagged']}, dropped {q['files_dropped']}"))
    tail = (f"audio {record['audio_s']:.1f} s, speech {record['speech_s']:.1f} s in {record['wall_s']:.1f} s wall: "
            f"{record['throughput']['audio_s_per_wall_s'] or 0:.1f} audio-s/s; "
            f"every row accounted for: {'yes' if record['reconciled'] else 'NO'}")
    seg = record.get("segment_accounting") or {}
    if seg.get("reconciled") is not None:
        tail += (f"; every segment accounted for: {'yes' if seg['reconciled'] else 'NO'} (cut {seg['cut']} = "
                 f"transcribed {seg['transcribed']} + failed {seg['failed']} + reused {seg['reused']}"
                 + (f"; LOST {seg['lost']}" if seg["lost"] else "") + ")")
    if record.get("cost"):
        tail += "\n" + format_cost(record["cost"])
    return "\n".join([head, *rows, tail])
