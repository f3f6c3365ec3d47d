"""Split a labelling run's term chunks into the trainer's train and test files, holding out whole
source files (their speakers and recordings) for the test set.

  python -m asr_distill.retrieval.split OUTPUT [--test_share 0.1] [--by key|speaker]

Reads OUTPUT/term_chunks-*.jsonl (what `python -m beam_pipeline ... --glossary=G.json` wrote), writes
OUTPUT/train.jsonl and OUTPUT/test.jsonl beside them (so the chunks' shard paths, relative to that
folder, still resolve). A chunk goes to the test set when the hash of its `key` (its source file;
or `speaker`, when the chunks have one) falls in the first `test_share`: the same split on every run.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys


def held_out(value: str, share: float) -> bool:
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "big") / 2 ** 64 < share


def split(output: str, test_share: float = 0.1, by: str = "key") -> tuple[int, int]:
    files = sorted(glob.glob(os.path.join(output, "term_chunks-*.jsonl")))
    if not files:
        raise FileNotFoundError(f"no term_chunks-*.jsonl in {output}: run the pipeline with --glossary first")
    counts = [0, 0]
    with open(os.path.join(output, "train.jsonl"), "w", encoding="utf-8") as train, \
            open(os.path.join(output, "test.jsonl"), "w", encoding="utf-8") as test:
        for path in files:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    test_side = held_out(str(record.get(by) or record.get("key")), test_share)
                    (test if test_side else train).write(line if line.endswith("\n") else line + "\n")
                    counts[test_side] += 1
    return counts[0], counts[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asr_distill.retrieval.split", description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="a labelling run's --output directory")
    ap.add_argument("--test_share", type=float, default=0.1, help="share of source files held out for testing")
    ap.add_argument("--by", choices=["key", "speaker"], default="key", help="what is held out whole")
    args = ap.parse_args(argv)
    try:
        n_train, n_test = split(args.output, args.test_share, args.by)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{n_train} training chunks in {os.path.join(args.output, 'train.jsonl')}, "
          f"{n_test} test chunks in {os.path.join(args.output, 'test.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
