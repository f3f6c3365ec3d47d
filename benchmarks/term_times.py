"""Term times for term chunks (issue 27): how far the word times the pipeline gives a glossary term
are from when it was said, and how fast the chunking step runs on one core.

  .venv/bin/python benchmarks/term_times.py [--files 24] [--out term_times.jsonl]

Each file is four utterances "carrier + term + carrier" in one espeak-ng voice (six voices), the
pieces said apart and joined with 80 ms between words and 0.8 s between utterances, so each term's
true start and end are known. The file (10-16 s) is one segment, as the pipeline would send it.
Word times, three ways: `teacher` — the reference text aligned to the audio (what a vLLM teacher's
correct text gets: asr_distill.terms.align_words, Whisper base int8), `faster-whisper` — the embedded
model's own transcript aligned the same way (what the pipeline does with the faster-whisper
backend), and `fw-native` — faster-whisper's own word timestamps (for comparison). Errors are
signed (negative: early); a term the transcript missed counts as missed. Chunking speed: align +
plan + cut per segment, one thread, as the TermChunks step does it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from term_corpus import speak  # noqa: E402
from speechgen import trim_silence  # noqa: E402  (tests/, on the path through term_corpus)

from asr_distill.glossary import Glossary  # noqa: E402
from asr_distill.models import embedded_whisper_base  # noqa: E402
from asr_distill.terms import TermMatcher, Word, align_words, plan_chunks  # noqa: E402

TERMS = ["volcano", "chocolate", "telescope", "penguin", "hurricane", "marathon", "cathedral", "machine learning",
         "saxophone", "algebra", "kilogram", "photosynthesis", "Mississippi", "lighthouse", "avalanche", "espresso",
         "dinosaur", "umbrella", "xylophone", "kangaroo", "cinnamon", "harmonica", "microscope", "butterfly"]
CARRIERS = [("yesterday we talked about the", "again in the morning"), ("please bring the", "before lunch"),
            ("this is a", "for everyone here"), ("I think the", "is very important"),
            ("we saw a", "near the river"), ("they sold the", "last week")]
VOICES = [("en-us", 160, 50), ("en-gb+m3", 170, 40), ("en-gb-x-rp+f2", 155, 60), ("en-029+f4", 150, 55),
          ("en-gb-scotland+m4", 165, 50), ("en-us-nyc+f3", 170, 58)]


def make_file(i: int):
    voice = VOICES[i % len(VOICES)]
    pieces, t, truth, text = [np.zeros(8000, np.int16)], 0.5, [], []
    for u in range(4):
        term = TERMS[(4 * i + u) % len(TERMS)]
        before, after = CARRIERS[(u + i) % len(CARRIERS)]
        for piece in (before, term, after):
            pcm = trim_silence(speak(piece, *voice))
            if piece == term:
                truth.append((term, t, t + len(pcm) / 16000))
            pieces += [pcm, np.zeros(1280, np.int16)]
            t += (len(pcm) + 1280) / 16000
        text.append(f"{before} {term} {after}.")
        pieces.append(np.zeros(12800, np.int16))
        t += 0.8
    audio = np.concatenate(pieces + [np.zeros(8000, np.int16)]).astype(np.float32) / 32768
    return audio, " ".join(text), truth, voice[0]


def errors(words, truth, matcher) -> tuple[list, int]:
    hits = {h.term: h for h in matcher.find(words)}
    out, missed = [], 0
    for term, start, end in truth:
        h = hits.get(term)
        if h is None:
            missed += 1
        else:
            out.append((h.start_s - start, h.end_s - end))
    return out, missed


def stats(errs: list) -> dict:
    e = np.array(errs)
    a = np.abs(e)
    return {"terms": len(e), "start_median_s": round(float(np.median(a[:, 0])), 3),
            "start_p95_s": round(float(np.percentile(a[:, 0], 95)), 3),
            "end_median_s": round(float(np.median(a[:, 1])), 3), "end_p95_s": round(float(np.percentile(a[:, 1], 95)), 3),
            "start_mean_signed_s": round(float(e[:, 0].mean()), 3), "end_mean_signed_s": round(float(e[:, 1].mean()), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from faster_whisper import WhisperModel

    model = WhisperModel(str(embedded_whisper_base()), device="cpu", compute_type="int8", cpu_threads=1,
                         local_files_only=True)
    matcher = TermMatcher(Glossary.from_json(TERMS))
    ways = {"teacher": [], "faster-whisper": [], "fw-native": []}
    missed = dict.fromkeys(ways, 0)
    chunk_s, chunks, segments = 0.0, 0, 0
    for i in range(args.files):
        audio, text, truth, _voice = make_file(i)
        t0 = time.perf_counter()
        words = align_words(model, audio, text)
        plans, _ = plan_chunks(words, matcher.find(words), len(audio) / 16000)
        cut = [audio[int(p.start_s * 16000): int(p.end_s * 16000)] for p in plans]
        chunk_s += time.perf_counter() - t0
        chunks, segments = chunks + len(cut), segments + 1
        e, m = errors(words, truth, matcher)
        ways["teacher"] += e
        missed["teacher"] += m
        segs, _ = model.transcribe(audio, language="en", beam_size=1, word_timestamps=True,
                                   condition_on_previous_text=False)
        native = [Word(w.word, w.start, w.end) for s in segs for w in s.words]
        e, m = errors(native, truth, matcher)
        ways["fw-native"] += e
        missed["fw-native"] += m
        own_text = " ".join(w.text for w in native)
        e, m = errors(align_words(model, audio, own_text), truth, matcher)
        ways["faster-whisper"] += e
        missed["faster-whisper"] += m
    line = {"step": "term_times", "date": str(date.today()), "machine": f"{platform.machine()}, {platform.node()}",
            "files": args.files, **{way: dict(stats(e), missed=missed[way]) for way, e in ways.items() if e},
            "chunking_one_core": {"segments": segments, "chunks": chunks, "seconds": round(chunk_s, 2),
                                  "chunks_per_s": round(chunks / chunk_s, 2), "segments_per_s": round(segments / chunk_s, 2)}}
    print(json.dumps(line, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
