"""CPU front end (decode + VAD + segmenting) on one core: the naive path vs ours, in one run.

- naive: decode with PyAV's resampler frame by frame, then silero-vad's `get_speech_timestamps` (ONNX,
  one model call per 32 ms frame) — the front end before this work;
- ours (core): `decode_to_mono16k` + `SileroVad` + `plan_segments`, for each VAD backend of `--vad`
  (default: `silero-sequence`, ONNX, and `silero`, torch);
- ours (pipeline): `python -m beam_pipeline --stop_after=segment`, Beam start-up included, per backend.

Every measurement runs in its own process pinned to one core (`taskset -c 0`) and reports audio
seconds per CPU second (user + sys) and peak RSS. Also: a 2-hour file through the pipeline (peak RSS),
and how far our regions are from the naive path's (count and boundaries).

Usage: python benchmarks/frontend.py [--minutes 24] [--copies 4] [--two_hours] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

FORMATS = ["mp3", "flac", "ogg", "m4a", "mp4"]  # mp3 44.1 kHz stereo, FLAC, Opus, AAC, AAC in video


def naive_decode(path: str) -> np.ndarray:
    """The decode this work replaced: FFmpeg's resampler frame by frame, stereo scaled to the mean."""
    out = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    with av.open(path) as container:
        stream = container.streams.audio[0]
        scale = np.float32(1 / np.sqrt(2)) if stream.codec_context.channels == 2 else np.float32(1)
        for frame in container.decode(stream):
            out += [o.to_ndarray().reshape(-1) * scale for o in resampler.resample(frame)]
        out += [o.to_ndarray().reshape(-1) * scale for o in resampler.resample(None)]
    return np.concatenate(out)


def naive_regions(wave: np.ndarray, cfg) -> list[tuple[float, float]]:
    """silero-vad's get_speech_timestamps with the stock ONNX model: one call per 32 ms frame."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    if "model" not in naive_regions.__dict__:
        naive_regions.model = load_silero_vad(onnx=True)
    stamps = get_speech_timestamps(torch.from_numpy(wave), naive_regions.model, threshold=cfg.threshold,
                                   sampling_rate=16000, min_speech_duration_ms=cfg.min_speech_ms,
                                   min_silence_duration_ms=cfg.min_silence_ms, speech_pad_ms=cfg.speech_pad_ms)
    return [(s["start"] / 16000, s["end"] / 16000) for s in stamps]


def make_media(out: Path, minutes: float) -> list[Path]:
    """Long-form speech with pauses, one file per format, `minutes` in all."""
    import speechgen

    per_file = minutes * 60 / len(FORMATS)
    paths = []
    for i, ext in enumerate(FORMATS):
        sentences = [speechgen.SENTENCES[(i * 7 + j) % len(speechgen.SENTENCES)] for j in range(16)]
        base = out / f"base{i}.wav"
        speechgen.long_form(base, sentences, [0.6, 1.6, 3.2, 0.9])
        with av.open(str(base)) as c:
            seconds = c.duration / av.time_base
        long = out / f"long{i}.wav"
        subprocess.run(["sox", str(base), str(long), "repeat", str(max(0, int(per_file / seconds)))], check=True)
        paths.append(speechgen.encode(long, out / f"talk{i}.{ext}"))
        base.unlink()
        long.unlink()
    return paths


def _worker(mode: str, files: list[str]) -> dict:
    """Runs in the pinned child: the front end over the files, CPU time measured here (mode: naive, or
    ours:BACKEND)."""
    from asr_distill.config import Config, VadConfig
    from asr_distill.media import decode_to_mono16k
    from asr_distill.segmenting import plan_segments
    from asr_distill.vad import SileroVad

    cfg = Config()
    mode, _, backend = mode.partition(":")
    vad = SileroVad(VadConfig(backend=backend)) if mode == "ours" else None
    audio_s = regions = 0
    per_format = {}
    t0 = time.process_time()
    for path in files:
        t_file = time.process_time()
        if mode == "naive":
            wave = naive_decode(path)
            found = naive_regions(wave, cfg.vad)
        else:
            wave = decode_to_mono16k(path)
            found = vad.speech_regions(wave)
            plan_segments(found, wave, cfg.segmenting)
        seconds = len(wave) / 16000
        per_format[Path(path).suffix[1:]] = round(seconds / (time.process_time() - t_file), 1)
        audio_s += seconds
        regions += len(found)
    cpu = time.process_time() - t0
    return {"audio_s": audio_s, "cpu_s": cpu, "regions": regions, "x_realtime_by_format": per_format}


def _pinned(args: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Runs a command on core 0; returns it, its CPU seconds (user + sys) and its peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["taskset", "-c", "0", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{args[:4]} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, cpu, after.ru_maxrss / 1024


def core(mode: str, files: list[Path]) -> dict:
    proc, _cpu, rss = _pinned([sys.executable, __file__, "--worker", mode, *map(str, files)])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["x_realtime_per_core"] = round(out["audio_s"] / out["cpu_s"], 1)
    out["peak_rss_mb"] = round(rss)
    return out


def pipeline(files: list[Path], copies: int, work: Path, vad: str = "silero-sequence") -> dict:
    index = work / f"index-{copies}.jsonl"
    index.write_text("".join(json.dumps({"key": f"{p.stem}-{c}", "uri": str(p)}) + "\n"
                             for c in range(copies) for p in files))
    config = work / f"vad-{vad}.yaml"
    config.write_text(f"vad: {{backend: {vad}}}\n")
    out = work / f"out-{copies}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    _proc, cpu, rss = _pinned([sys.executable, "-m", "beam_pipeline", f"--input_index={index}", f"--output={out}",
                               f"--config={config}", "--stop_after=segment"])
    wall = time.monotonic() - t0
    record = json.loads((out / "run.json").read_text())
    audio = record["audio_s"]
    return {"files": len(files) * copies, "audio_s": audio, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "x_realtime_per_core": round(audio / cpu, 1), "peak_rss_mb": round(rss),
            "segments": record["counts"]["segments"]}


def agreement(files: list[Path]) -> dict:
    from asr_distill.config import Config
    from asr_distill.media import decode_to_mono16k
    from asr_distill.vad import SileroVad

    cfg = Config().vad
    vad = SileroVad(cfg)
    worst, counts = 0.0, []
    for p in files:
        ref = naive_regions(naive_decode(str(p)), cfg)
        ours = [(r.start_s, r.end_s) for r in vad.speech_regions(decode_to_mono16k(str(p)))]
        counts.append((len(ref), len(ours)))
        if len(ref) == len(ours):
            worst = max([worst] + [abs(a - b) for x, y in zip(ref, ours) for a, b in zip(x, y)])
    return {"region_counts_naive_vs_ours": counts, "max_boundary_diff_ms": round(1000 * worst, 1)}


def two_hours(work: Path) -> dict:
    import speechgen

    base = work / "base2h.wav"
    speechgen.long_form(base, speechgen.SENTENCES[:20], [0.6, 1.6, 3.2, 0.9])
    with av.open(str(base)) as c:
        seconds = c.duration / av.time_base
    long = work / "long2h.wav"
    subprocess.run(["sox", str(base), str(long), "repeat", str(int(7200 / seconds))], check=True)
    path = speechgen.encode(long, work / "two_hours.mp3")
    long.unlink()
    result = pipeline([path], 1, work)
    return {"audio_s": result["audio_s"], "peak_rss_mb": result["peak_rss_mb"],
            "x_realtime_per_core": result["x_realtime_per_core"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=24)
    ap.add_argument("--copies", type=int, default=4, help="index rows per file in the pipeline run")
    ap.add_argument("--two_hours", action="store_true", help="also a 2-hour mp3 through the pipeline")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--vad", default="silero-sequence,silero", help="VAD backends to measure, comma-separated")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, rest)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = make_media(work, args.minutes)
        results = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one used",
            "date": time.strftime("%Y-%m-%d"),
            "media": [f"{p.suffix[1:]}" for p in files],
            "naive_core": core("naive", files),
        }
        naive = results["naive_core"]["x_realtime_per_core"]
        for vad in args.vad.split(","):
            results[f"ours_core[{vad}]"] = core(f"ours:{vad}", files)
            results[f"ours_pipeline[{vad}]"] = pipeline(files, args.copies, work, vad)
            results[f"speedup_core[{vad}]"] = round(results[f"ours_core[{vad}]"]["x_realtime_per_core"] / naive, 2)
            results[f"speedup_pipeline_vs_naive_core[{vad}]"] = round(
                results[f"ours_pipeline[{vad}]"]["x_realtime_per_core"] / naive, 2)
        results["regions"] = agreement(files)
        if args.two_hours:
            results["two_hour_mp3_pipeline"] = two_hours(work)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
