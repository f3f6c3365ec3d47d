"""Many small files: decoding each file vs reading the same items from packed shards, in one run.

Items: short clips (~10 s, like most crawled speech), cut from generated long-form speech and encoded
as mp3 (44.1 kHz stereo), FLAC, Opus and AAC (.m4a) in turn. They are packed once with
`python -m beam_pipeline.pack` (timed too: the one-off cost). Then, each in its own process pinned to
core 0 (`taskset -c 0`), audio seconds per CPU second (user + sys):

- read stage alone: `decode_to_mono16k(file)` vs the packed read the Decode stage does (memory map +
  int16 -> float32);
- front end through the pipeline: `python -m beam_pipeline --stop_after=segment` from the files' index
  vs from the pack's index (VAD and segmenting included, Beam start-up included).

Both sides read warm files (just written, in the page cache). Usage:
python benchmarks/shards.py [--clips 480] [--clip_s 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.frontend import _pinned  # noqa: E402

FORMATS = ["mp3", "flac", "opus", "m4a"]


def make_clips(work: Path, clips: int, clip_s: float) -> list[Path]:
    import speechgen

    base = work / "base.wav"
    speechgen.long_form(base, speechgen.SENTENCES[:24], [0.6, 1.6, 0.9])
    long = work / "long.wav"
    total_s = clips * clip_s
    subprocess.run(["sox", str(base), str(long), "repeat", str(int(total_s / 90) + 1)], check=True)
    paths = []
    per_format = clips // len(FORMATS)
    for i, ext in enumerate(FORMATS):
        start = i * per_format * clip_s
        out = work / ext
        out.mkdir()
        subprocess.run(["ffmpeg", "-v", "error", "-ss", str(start), "-t", str(per_format * clip_s), "-i", str(long),
                        "-f", "segment", "-segment_time", str(clip_s), *speechgen.ENCODINGS[ext],
                        str(out / f"clip%04d.{ext}")], check=True)
        paths += sorted(out.iterdir())[:per_format]  # ffmpeg may add a last clip of a few ms
    return paths


def _worker(mode: str, index: str) -> dict:
    import numpy as np

    from asr_distill.media import decode_to_mono16k
    from asr_distill.shards import ByteRange, parse_byte_range, pcm16_to_float, read_pcm_mmap

    rows = [json.loads(line) for line in Path(index).read_text().splitlines()]
    folder = Path(index).parent
    audio_s, check = 0.0, 0.0
    t0 = time.process_time()
    for row in rows:
        if mode == "files":
            wave = decode_to_mono16k(row["uri"])
        else:
            rng = parse_byte_range(row["uri"])
            wave = pcm16_to_float(read_pcm_mmap(ByteRange(str(folder / rng.path), rng.offset, rng.length)))
        audio_s += len(wave) / 16000
        check += float(np.abs(wave[::997]).sum())
    cpu = time.process_time() - t0
    return {"items": len(rows), "audio_s": round(audio_s, 1), "cpu_s": round(cpu, 3),
            "x_realtime_per_core": round(audio_s / cpu, 1), "checksum": round(check, 2)}


def read_stage(mode: str, index: Path) -> dict:
    proc, _cpu, _rss = _pinned([sys.executable, __file__, "--worker", mode, str(index)])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def front_end(index: str, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    _proc, cpu, rss = _pinned([sys.executable, "-m", "beam_pipeline", f"--input_index={index}", f"--output={out}",
                               "--stop_after=segment"])
    record = json.loads((out / "run.json").read_text())
    return {"audio_s": record["audio_s"], "cpu_s": round(cpu, 2), "wall_s": round(time.monotonic() - t0, 2),
            "x_realtime_per_core": round(record["audio_s"] / cpu, 1), "segments": record["counts"]["segments"],
            "peak_rss_mb": round(rss)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=480)
    ap.add_argument("--clip_s", type=float, default=10.0)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(*args.worker)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = make_clips(work, args.clips, args.clip_s)
        files_index = work / "files.jsonl"
        files_index.write_text("".join(json.dumps({"key": f"{p.parent.name}/{p.stem}", "uri": str(p)}) + "\n"
                                       for p in clips))
        packed = work / "packed"
        t0 = time.monotonic()
        _proc, pack_cpu, _rss = _pinned([sys.executable, "-m", "beam_pipeline.pack", f"--input_index={files_index}",
                                         f"--output={packed}"])
        pack_record = json.loads((packed / "pack.json").read_text())
        pack_wall = time.monotonic() - t0
        packed_index = work / "packed-index.jsonl"  # one file, for the read-stage worker
        packed_index.write_text("".join(p.read_text() for p in sorted(packed.glob("index-*.jsonl"))))
        (packed / "all.jsonl").write_text(packed_index.read_text())
        results = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one used",
            "date": time.strftime("%Y-%m-%d"),
            "items": len(clips), "formats": FORMATS, "clip_s": args.clip_s,
            "media_bytes": sum(p.stat().st_size for p in clips),
            "shard_bytes": pack_record["counts"]["shard_bytes"],
            "pack": {"audio_s": pack_record["audio_s"], "cpu_s": round(pack_cpu, 2), "wall_s": round(pack_wall, 2),
                     "x_realtime_per_core": round(pack_record["audio_s"] / pack_cpu, 1)},
            "read_files": read_stage("files", files_index),
            "read_shards": read_stage("shards", packed / "all.jsonl"),
            "front_end_files": front_end(str(files_index), work / "out-files"),
            "front_end_shards": front_end(f"{packed}/index-*.jsonl", work / "out-shards"),
        }
        for stage in ("read", "front_end"):
            results[f"{stage}_speedup"] = round(results[f"{stage}_shards"]["x_realtime_per_core"]
                                                / results[f"{stage}_files"]["x_realtime_per_core"], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
