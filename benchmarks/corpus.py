"""Benchmark corpora of long-form speech with known text, made from espeak-ng sentence clips.

Two steps, so that a big corpus can be made where no espeak-ng is (the GPU machine): `clips` speaks
each sentence in several voices and rates (here, espeak-ng; a few MB of Opus), and `build` assembles
`--rows` distinct files from them: 6-12 clips each (about 33 s of speech; `--per-file 5-10`, the runs of
2026-12-01 and before, gives 44.9k s over 1650 rows, short of the 50k s the GPU benchmark wants) in random order, pauses of 0.3-4 s (now and then
8 s), random gain and a little noise, encoded in turn as mp3, flac, opus, m4a and mp4 (PyAV), plus an
index with each file's reference text in `meta.reference_text`. Every row's audio differs.

  python benchmarks/corpus.py clips --out DIR
  python benchmarks/corpus.py build --clips DIR --out DIR --rows 1650 [--seed 0] [--workers 16] [--per-file 6-12]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
sys.path.insert(0, str(ROOT / "tests"))
import speechgen  # noqa: E402  (the test suite's sentences and espeak-ng helper)

SENTENCES = speechgen.SENTENCES + [
    "Most of the shops in the old town close early on Sunday.",
    "The engineers tested the engine for several hours without a break.",
    "Her grandmother told stories about the war and the long winters.",
    "The committee will meet again next Tuesday to discuss the budget.",
    "A strong wind blew the leaves across the empty square.",
    "The recipe calls for two eggs, a cup of flour and some butter.",
    "Thousands of people gathered in the stadium for the final match.",
    "The boat carried fishermen and their nets out to the open sea.",
    "Scientists have found a new species of frog in the rain forest.",
    "The post office is on the left, just past the railway station.",
    "Nobody expected the little team to win the championship.",
    "The painter mixed blue and yellow to make a bright green.",
    "Traffic on the motorway was slow because of the roadworks.",
    "The kitchen smelled of cinnamon, apples and warm bread.",
    "He spent the whole afternoon fixing the old bicycle.",
    "The hotel offers a view of the mountains from every room.",
    "Our teacher asked us to write a short essay about the ocean.",
    "The market sells vegetables, cheese and flowers every Saturday.",
    "The telescope showed the rings of the planet very clearly.",
    "After the concert, the musicians signed autographs for their fans.",
    "The city council plans to build a new school near the river.",
    "A cold front will bring snow to the hills by the weekend.",
    "The children built a sandcastle with towers and a deep moat.",
    "The factory produces thousands of bottles of water each day.",
]
VOICES = [("en-us", 165), ("en-us", 185), ("en", 155), ("en", 180), ("en-us+f3", 170), ("en+m3", 150)]
FORMATS = ("mp3", "flac", "opus", "m4a", "mp4")
# PyAV codec, container format, output rate, bit rate (None: lossless) per format.
ENCODING = {"mp3": ("libmp3lame", "mp3", 44100, 64000), "flac": ("flac", "flac", RATE, None),
            "opus": ("libopus", "ogg", 48000, 24000), "m4a": ("aac", "ipod", 48000, 64000),
            "mp4": ("aac", "mp4", 48000, 64000)}


def make_clips(out: Path) -> None:
    """Every sentence in every voice, as 16 kHz Opus, with clips.json: [{file, text, voice, speed}]."""
    import av  # noqa: F401 - fail early if PyAV is missing

    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for s, text in enumerate(SENTENCES):
        for v, (voice, speed) in enumerate(VOICES):
            pcm, rate = speechgen._speak(text, voice, speed)
            wave = _resample(pcm.astype(np.float32) / 32768, rate)
            name = f"s{s:02d}v{v}.opus"
            _encode(wave, out / name, ("libopus", "ogg", 48000, 32000))
            clips.append({"file": name, "text": text, "voice": voice, "speed": speed})
    (out / "clips.json").write_text(json.dumps(clips, indent=0))
    print(f"{len(clips)} clips in {out}")


def _resample(wave: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return wave
    t = np.arange(int(len(wave) * RATE / rate)) * (rate / RATE)
    return np.interp(t, np.arange(len(wave)), wave).astype(np.float32)


def _encode(wave: np.ndarray, path: Path, encoding) -> None:
    import av

    codec, fmt, out_rate, bit_rate = encoding
    pcm = np.clip(wave * 32767, -32768, 32767).astype(np.int16)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
        for start in range(0, len(pcm), RATE * 10):
            frame = av.AudioFrame.from_ndarray(pcm[None, start:start + RATE * 10], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts, frame.time_base = start, Fraction(1, RATE)  # the mp4 muxer needs timestamps
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    container.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


_CLIPS: dict = {}


def _clip(path: Path) -> np.ndarray:
    """A clip decoded once per process."""
    if path not in _CLIPS:
        sys.path.insert(0, str(ROOT))
        from asr_distill.media import decode_to_mono16k

        with open(path, "rb") as f:
            _CLIPS[path] = decode_to_mono16k(f)
    return _CLIPS[path]


def _build_one(job) -> dict:
    row, seed, clips_dir, clips, out, per_file = job
    rng = np.random.default_rng([seed, row])
    picks = rng.integers(0, len(clips), size=int(rng.integers(per_file[0], per_file[1] + 1)))
    pieces, texts = [np.zeros(int(RATE * rng.uniform(0.2, 1.0)), np.float32)], []
    for n, c in enumerate(picks):
        wave = _clip(clips_dir / clips[c]["file"]) * float(rng.uniform(0.3, 1.0))
        pieces.append(wave)
        texts.append(clips[c]["text"])
        pause = 8.0 if rng.random() < 0.08 else float(rng.uniform(0.3, 4.0))
        pieces.append(np.zeros(int(RATE * pause), np.float32))
    audio = np.concatenate(pieces)
    audio += (0.002 * rng.standard_normal(len(audio))).astype(np.float32)
    ext = FORMATS[row % len(FORMATS)]
    name = f"{row:05d}.{ext}"
    _encode(audio, out / name, ENCODING[ext])
    return {"key": f"bench/{row:05d}", "uri": name, "duration_s": round(len(audio) / RATE, 3),
            "language": "en", "meta": {"reference_text": " ".join(texts), "format": ext}}


def build(clips_dir: Path, out: Path, rows: int, seed: int = 0, workers: int = 0,
          per_file: tuple[int, int] = (6, 12)) -> Path:
    clips = json.loads((clips_dir / "clips.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(r, seed, clips_dir, clips, out, per_file) for r in range(rows)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        index = list(pool.map(_build_one, jobs, chunksize=8))
    path = out / "index.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in index))
    hours = sum(r["duration_s"] for r in index) / 3600
    print(f"{rows} files, {hours:.2f} h of audio, in {out}")
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clips")
    c.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("build")
    b.add_argument("--clips", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--rows", type=int, default=1650)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=0)
    b.add_argument("--per-file", default="6-12", help="clips per file, MIN-MAX")
    args = ap.parse_args(argv)
    if args.cmd == "clips":
        make_clips(args.out)
    else:
        low, high = (int(n) for n in args.per_file.split("-"))
        build(args.clips, args.out, args.rows, args.seed, args.workers, (low, high))


if __name__ == "__main__":
    main()
