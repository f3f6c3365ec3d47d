"""The characters' encoder reading many glossary terms at once (a training step reads the whole glossary):
one batch padded to the longest term, against groups of like length (`Characters.BUCKET_TERMS`), side by
side, alternating, forward and backward, on this machine's CPU.

  python benchmarks/term_reading_speed.py GLOSSARY.json [--terms 2048] [--reps 2]

GLOSSARY.json: a corpus's glossary with "pronunciations" (benchmarks/term_corpus.py writes one); the
encoder reads the phonemes, at the shipped size (4 layers, width 256). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_distill.retrieval.model import Characters  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("glossary", type=Path)
    ap.add_argument("--terms", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    g = json.loads(args.glossary.read_text())
    terms = random.Random(0).sample(g["terms"], min(args.terms, len(g["terms"])))
    torch.manual_seed(0)
    read = Characters(terms, 384, layers=4, d_model=256, readings=[g["pronunciations"][t] for t in terms]).train()
    ids, grouped, seconds = torch.arange(len(terms)), Characters.BUCKET_TERMS, {}
    lengths = (read.ids > 0).sum(1).float()
    for _ in range(args.reps):
        for name, bucket in (("one_batch", 1 << 40), ("groups", grouped)):
            Characters.BUCKET_TERMS = bucket
            t = time.perf_counter()
            read(ids).sum().backward()
            seconds.setdefault(name, []).append(round(time.perf_counter() - t, 2))
    Characters.BUCKET_TERMS = grouped
    print(json.dumps({"step": "term_reading", "terms": len(terms), "mean_symbols": round(float(lengths.mean()), 1),
                      "max_symbols": int(lengths.max()), "groups": min(8, len(terms) // grouped),
                      "threads": torch.get_num_threads(), "forward_backward_s": seconds,
                      "speedup": round(min(seconds["one_batch"]) / min(seconds["groups"]), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
