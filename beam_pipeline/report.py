"""`python -m beam_pipeline.report OUTPUT_DIR`: OUTPUT_DIR/report.html, one self-contained page.

What a user checks after a run: how much went in and came out, where time and files went, what failed
(by stage and error type, with examples), and whether the labels look trustworthy (the quality
signals' distributions and the quality rules' counts), plus the run's config. Plots are made with
matplotlib and embedded as PNG, so the file can be mailed or opened from object storage. Reads
run.json and the JSONL outputs through Beam's FileSystems (local, oss://, ...), streaming them; it
keeps one float per file and a few per segment, so tens of millions of segments fit in memory.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field

if __name__ == "__main__":  # before Beam is imported: it logs at import time
    from beam_pipeline.cli import setup_logging

    setup_logging()

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402

from asr_distill.cost import format_cost  # noqa: E402
from asr_distill.redact import redact  # noqa: E402
from transforms import oss_filesystem  # noqa: E402,F401  (registers oss://)

EXAMPLES_PER_ERROR = 3


@dataclass
class RunData:
    record: dict
    file_durations: list = field(default_factory=list)
    speech_ratios: list = field(default_factory=list)
    segment_durations: list = field(default_factory=list)
    avg_logprob: list = field(default_factory=list)
    compression_ratio: list = field(default_factory=list)
    chars_per_s: list = field(default_factory=list)
    failures: dict = field(default_factory=lambda: defaultdict(lambda: {"count": 0, "examples": []}))
    filtered_lines: int = 0
    reference_wers: list = field(default_factory=list)  # per file with a reference, kept or dropped
    chunk_durations: list = field(default_factory=list)  # term chunks (--glossary)


def _lines(output: str, kind: str):
    for meta in FileSystems.match([FileSystems.join(output, f"{kind}-*.jsonl")])[0].metadata_list:
        with FileSystems.open(meta.path) as f:
            for raw in f:
                if raw.strip():
                    yield json.loads(raw)


def _add_segment(data: RunData, seg: dict) -> None:
    seconds = seg["end_s"] - seg["start_s"]
    heard = sum(b - a for a, b in seg["parts"]) if seg.get("parts") else seconds
    data.segment_durations.append(seconds)
    if seg.get("avg_logprob") is not None:
        data.avg_logprob.append(seg["avg_logprob"])
    if seg.get("compression_ratio") is not None:
        data.compression_ratio.append(seg["compression_ratio"])
    if "text" in seg and heard > 0:
        data.chars_per_s.append(len(seg["text"].strip()) / heard)


def collect(output: str) -> RunData:
    run_json = FileSystems.join(output, "run.json")
    if not FileSystems.exists(run_json):
        raise FileNotFoundError(f"no run.json in {redact(output)}: not a finished run's output directory")
    with FileSystems.open(run_json) as f:
        data = RunData(json.load(f))
    if data.record.get("status") == "failed":
        raise FileNotFoundError(f"{redact(output)} holds a failed run ({data.record.get('error')}): "
                                "finish it with --resume first")
    def add_file(t: dict) -> None:
        data.file_durations.append(t["duration_s"])
        if t["duration_s"]:
            data.speech_ratios.append(t["speech_s"] / t["duration_s"])
        if t.get("reference_wer") is not None:
            data.reference_wers.append(t["reference_wer"])
        for seg in t["segments"]:
            _add_segment(data, seg)

    for t in _lines(output, "transcripts"):
        add_file(t)
    for line in _lines(output, "filtered"):
        data.filtered_lines += 1
        if "index" in line:  # a segment the quality rules dropped
            _add_segment(data, line)
        else:  # a whole file the reference rule dropped
            add_file(line)
    if data.record.get("stop_after") == "segment":
        for seg in _lines(output, "segments"):
            _add_segment(data, seg)
    for chunk in _lines(output, "term_chunks"):
        data.chunk_durations.append(chunk["duration_s"])
    for fail in _lines(output, "failures"):
        entry = data.failures[(fail["stage"], fail["error_type"])]
        entry["count"] += 1
        if len(entry["examples"]) < EXAMPLES_PER_ERROR:
            entry["examples"].append((fail.get("key"), fail.get("segment_index"), fail["message"]))
    return data


def _png(fig, caption: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return (f'<figure><figcaption>{html.escape(caption)}</figcaption>'
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"></figure>')


def _histogram(values: list, title: str, xlabel: str, lines: dict | None = None) -> str:
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    if values:
        ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="#4c72b0", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")
    for label, x in (lines or {}).items():
        if x is not None:
            ax.axvline(x, color="#c44e52", linestyle="--", linewidth=1.2, label=label)
            ax.legend(fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("count", fontsize=9)
    ax.tick_params(labelsize=8)
    return _png(fig, f"{title} (n={len(values)})")


def _stage_plot(stages: dict) -> str:
    names = [s for s in ("decode", "vad", "inference") if s in stages]
    seconds = [stages[s].get("audio_s", stages[s].get("speech_s", 0)) / 3600 for s in names]
    fig, ax = plt.subplots(figsize=(5.6, 2.4))
    ax.barh(names, seconds, color="#55a868")
    ax.invert_yaxis()
    ax.set_xlabel("hours", fontsize=9)
    ax.tick_params(labelsize=8)
    return _png(fig, "audio through each stage (decode: all audio; vad: speech found; inference: audio sent)")


def _table(headers: list | None, rows: list) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) + "</tr>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds:,.0f} s)"


def render(data: RunData, output: str) -> str:
    r = data.record
    c, th = r["counts"], r.get("throughput", {})
    q = r.get("quality") or {}
    filters = (r.get("config") or {}).get("filters") or {}
    audio, speech = r.get("audio_s", 0.0), r.get("speech_s", 0.0)
    summary = [
        ("index rows", c["index_rows"]),
        ("transcripts", f"{c['transcripts']} (ok {c['status']['ok']}, no speech {c['status']['no_speech']}, "
                        f"partial {c['status']['partial']})"),
        ("failed files / segments", f"{c['failures']} / {c.get('segment_failures', 0)}"),
        ("segments cut / transcribed", f"{c['segments']} / {c.get('segments_transcribed', 0)}"),
        ("audio", _hours(audio)), ("speech (VAD)", _hours(speech)),
        ("speech ratio", f"{speech / audio:.1%}" if audio else "-"),
        ("wall time", f"{r['wall_s']:,.1f} s"),
        ("throughput", f"{th.get('audio_s_per_wall_s') or 0:,.1f} audio-s per wall-s, "
                       f"{th.get('files_per_wall_s') or 0:,.2f} files per s"),
        ("every row accounted for", "yes" if r.get("reconciled") else "NO"),
        ("cost", format_cost(r["cost"]) if r.get("cost") else "not measured (an older run)"),
        ("resume", f"{r['resume']['rows_skipped']} rows skipped, {r['resume']['segments_reused']} segments reused"
         if r.get("resume", {}).get("resumed") else "not resumed"),
        ("model / backend", f"{r.get('model')} / {r.get('backend')}"),
        ("runner", f"{r.get('runner')} {json.dumps(r.get('environment'))}"),
    ]
    failure_rows = sorted(((stage, etype, e["count"], "; ".join(
        f"{key or '(no key)'}{'' if idx is None else f' #{idx}'}: {msg}" for key, idx, msg in e["examples"]))
        for (stage, etype), e in data.failures.items()), key=lambda row: -row[2])
    quality_rows = [(reason.split(":", 1)[1], reason.split(":", 1)[0], n) for reason, n in q.get("by_reason", {}).items()]
    plots = [
        _histogram(data.file_durations, "file durations", "seconds"),
        _histogram(data.segment_durations, "segment durations", "seconds"),
        _histogram(data.speech_ratios, "speech ratio per file", "speech seconds / file seconds"),
        _histogram(data.avg_logprob, "mean token log-probability per segment", "avg_logprob",
                   {"min_avg_logprob": filters.get("min_avg_logprob")}),
        _histogram(data.compression_ratio, "compression ratio per segment", "compression_ratio",
                   {"max_compression_ratio": filters.get("max_compression_ratio")}),
        _histogram(data.chars_per_s, "characters per second of speech", "chars / s",
                   {"min": filters.get("min_chars_per_s"), "max": filters.get("max_chars_per_s")}),
        _stage_plot(r.get("stages", {})),
    ]
    wer_max = filters.get("reference_wer_max")
    if data.reference_wers:
        plots.insert(3, _histogram(data.reference_wers, "WER against the row's reference, per file", "reference WER",
                                   {"reference_wer_max": wer_max}))
        kept = sum(w <= wer_max for w in data.reference_wers) if wer_max is not None else len(data.reference_wers)
        summary.append(("reference WER", f"{len(data.reference_wers)} files with a reference, median "
                        f"{sorted(data.reference_wers)[len(data.reference_wers) // 2]:.3f}; within reference_wer_max "
                        f"({wer_max}): {kept} ({kept / len(data.reference_wers):.0%})"))
    if data.chunk_durations:
        plots.insert(3, _histogram(data.chunk_durations, "term chunk durations", "seconds"))
    config = yaml.safe_dump(r.get("config", {}), sort_keys=False)
    title = f"asr-distill run report: {redact(output)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin: 8px 0; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px;
text-align: left; vertical-align: top; }} th {{ background: #f4f4f4; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }} figure {{ margin: 0; border: 1px solid #eee; padding: 6px; }}
figcaption {{ font-size: 13px; font-weight: 600; margin-bottom: 4px; }}
pre {{ background: #f7f7f7; padding: 10px; overflow-x: auto; font-size: 12px; }}
.bad {{ color: #b00; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Started {html.escape(str(r.get('started_at')))}, pipeline {html.escape(str(r.get('pipeline_version')))},
config digest {html.escape(str(r.get('config_digest')))}.{'' if r.get('reconciled') else
' <span class="bad">Rows are not reconciled: some index rows ended nowhere or twice.</span>'}</p>
<h2>Summary</h2>{_table(None, summary)}
<h2>Distributions</h2><div class="plots">{"".join(plots)}</div>
<h2>Stages</h2>{_table(["stage", "figures"], [(s, ", ".join(f"{k} {v:,.6g}" for k, v in f.items()))
                                              for s, f in r.get("stages", {}).items()])}
<h2>Failures by stage and error type</h2>
{_table(["stage", "error type", "count", "examples (key: message)"], failure_rows) if failure_rows else "<p>None.</p>"}
<h2>Quality rules</h2>
<p>Action: <b>{html.escape(str(q.get('action')))}</b>; segments flagged (kept): {q.get('segments_flagged', 0)},
dropped to filtered-*.jsonl: {q.get('segments_dropped', 0)} ({data.filtered_lines} lines there now).</p>
{_table(["rule", "outcome", "count"], quality_rows) if quality_rows else "<p>No segment broke a rule.</p>"}
<p>Files above <code>reference_wer_max</code>: flagged {q.get('files_flagged', 0)}, dropped to filtered-*.jsonl
{q.get('files_dropped', 0)} (of {q.get('files_with_reference', 0)} with a reference).</p>
{_terms_html(r.get("terms"))}
<h2>Config</h2><pre>{html.escape(config)}</pre>
</body></html>
"""


def _terms_html(t: dict | None) -> str:
    """The term chunks of a --glossary run: what a user looks at before training the retriever."""
    if not t:
        return ""
    w = t["written"]
    rows = [("glossary terms", t["glossary_terms"]), ("terms heard (with a chunk)", w["terms_heard"]),
            ("term chunks / no-term chunks written", f"{w['term_chunks']} / {w['no_term_chunks']}"),
            ("chunk seconds (min / median / p95 / max)", " / ".join(str(w["chunk_s"][k]) for k in ("min", "p50", "p95", "max"))),
            ("this run: hits = chunks + skipped", f"{t['hits']} = {t['chunks']} + {sum(t['skipped'].values())} "
             f"{json.dumps(t['skipped'])}" + ("" if t["reconciled"] else " (NOT reconciled)")),
            ("segments aligned", f"{t['segments_aligned']} in {t['align_s']} s")]
    never = t["never_heard"]
    by_term = sorted(t["chunks_by_term"].items(), key=lambda kv: (-kv[1], kv[0]))
    return (f"<h2>Terms</h2>{_table(None, rows)}"
            f"<p>Never heard ({never['count']}): {html.escape(', '.join(never['terms']))}"
            f"{' ...' if never['count'] > len(never['terms']) else ''}</p>"
            f"{_table(['term', 'chunks'], by_term[:200])}")


def write_report(output: str) -> str:
    page = render(collect(output), output)
    path = FileSystems.join(output, "report.html")
    with FileSystems.create(path, mime_type="text/html") as f:
        f.write(page.encode("utf-8"))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beam_pipeline.report", description=__doc__.splitlines()[0])
    ap.add_argument("output", help="a finished run's --output directory (local, oss://, ...)")
    ap.add_argument("--oss_endpoint", default=None, help="for oss:// outputs (else OSS_ENDPOINT)")
    args = ap.parse_args(argv)
    if args.oss_endpoint:
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions([f"--oss_endpoint={args.oss_endpoint}"]))
    try:
        path = write_report(args.output)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {redact(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
