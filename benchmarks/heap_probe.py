"""Where a worker's memory goes as it sees more files: the front end (decode, Silero, cutting) in one
process over an index, repeated, printing RSS after each pass; with `--trim-every N`, glibc's
`malloc_trim(0)` after every N files, to tell memory that is held but free (it comes back) from memory
that leaks (it does not), and what giving it back costs (page faults, system CPU).

  .venv/bin/python benchmarks/heap_probe.py INDEX [--passes 3] [--trim-every N]

Results and their reading: RESULTS.md, "Memory against corpus size".
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_distill.config import Config  # noqa: E402
from asr_distill.media import decode_to_mono16k  # noqa: E402
from asr_distill.processes import rss  # noqa: E402
from asr_distill.records import DecodedAudio, IndexRow  # noqa: E402
from asr_distill.segmenting import cut_segments, plan_segments  # noqa: E402
from asr_distill.vad import SileroVad  # noqa: E402


def rss_mb() -> int:
    return rss() // 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index", type=Path)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--trim-every", type=int, default=0, help="malloc_trim(0) every N files (0: never)")
    args = ap.parse_args()
    trim = ctypes.CDLL("libc.so.6").malloc_trim if args.trim_every else None
    cfg = Config()
    vad = SileroVad(cfg.vad)
    rows = [json.loads(line) for line in args.index.read_text().splitlines() if line.strip()]
    files, trim_s, t0 = 0, 0.0, time.time()
    for n in range(args.passes):
        for row in rows:
            with open(args.index.parent / row["uri"], "rb") as f:
                wave = decode_to_mono16k(f, cfg.audio.max_duration_s)
            plan = plan_segments(vad.speech_regions(wave), wave, cfg.segmenting)
            [s.without_audio() for s in cut_segments(DecodedAudio(IndexRow(row["key"], row["uri"]), wave), plan)]
            del wave
            files += 1
            if trim and files % args.trim_every == 0:
                t = time.time()
                trim(0)
                trim_s += time.time() - t
        print(json.dumps({"pass": n, "files": files, "rss_mb": rss_mb()}), flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"trim_every": args.trim_every, "files": files, "wall_s": round(time.time() - t0, 1),
                      "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
                      "minor_faults": usage.ru_minflt, "trim_s": round(trim_s, 2),
                      "peak_rss_mb": usage.ru_maxrss // 1024, "rss_mb": rss_mb()}))


if __name__ == "__main__":
    main()
