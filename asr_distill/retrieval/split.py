"""Split a labelling run's term chunks into the trainer's train, validation and test files, holding
out whole source files (their speakers and recordings) for validation and test.

  python -m asr_distill.retrieval.split OUTPUT [--test_share 0.1] [--valid_share 0.1] [--by key|speaker]

Reads OUTPUT/term_chunks-*.jsonl (what `python -m beam_pipeline ... --glossary=G.json` wrote), writes
OUTPUT/train.jsonl, OUTPUT/valid.jsonl and OUTPUT/test.jsonl beside them (so the chunks' shard paths,
relative to that folder, still resolve). A chunk goes to the test set when the hash of its `key` (its
source file; or `speaker`, when the chunks have one) falls in the first `test_share`, to the
validation set when it falls in the next `valid_share`: the same split on every run. The trainer
chooses on the validation set and reports the test set (`leaks` is what it checks first).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys


def leaks(train, held_out, glossary) -> dict:
    """What training hears of the held-out chunks (validation, test), which it must not.

    `train`, `held_out`: sequences of chunks (`key`, `term`, `terms`, `text`, `speaker`: data.Chunk).
    A held-out chunk's term that no training chunk has as its term is a never-heard term; it leaks if a
    training chunk holds it anyway (in its `terms`) or says it (its text, in whole words, normalised as
    glossary terms are; the glossary's alternative forms of it too). A held-out speaker leaks if a
    training chunk has that speaker. Returns {"terms": [(term, training key)], "speakers": [(speaker,
    training key)]}, one pair for each leak, empty lists for a clean split."""
    from asr_distill.glossary import normalise

    heard = {c.term for c in train if c.term is not None}
    unseen = sorted({c.term for part in held_out for c in part if c.term is not None} - heard)
    forms = {i: {normalise(glossary.terms[i])} for i in unseen}
    for alt, main in glossary.alt2main.items():
        i = glossary.index(main)
        if i in forms:
            forms[i].add(alt)
    longest = max((len(f.split()) for fs in forms.values() for f in fs), default=0)
    inside, said = {}, {}
    for c in train:
        for i in c.terms:
            inside.setdefault(i, c.key)
        words = normalise(c.text or "").split()
        for n in range(1, longest + 1):
            for j in range(len(words) - n + 1):
                said.setdefault(" ".join(words[j:j + n]), c.key)
    terms = []
    for i in unseen:
        key = inside.get(i) or next((said[f] for f in sorted(forms[i]) if f in said), None)
        if key is not None:
            terms.append((glossary.terms[i], key))
    trained = {}
    for c in train:
        if c.speaker:
            trained.setdefault(c.speaker, c.key)
    speakers = sorted({(c.speaker, trained[c.speaker]) for part in held_out for c in part
                       if c.speaker and c.speaker in trained})
    return {"terms": terms, "speakers": speakers}


def held_out(value: str, share: float) -> bool:
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "big") / 2 ** 64 < share


def split(output: str, test_share: float = 0.1, by: str = "key", valid_share: float = 0.1) -> tuple[int, int, int]:
    files = sorted(glob.glob(os.path.join(output, "term_chunks-*.jsonl")))
    if not files:
        raise FileNotFoundError(f"no term_chunks-*.jsonl in {output}: run the pipeline with --glossary first")
    counts = [0, 0, 0]
    names = ("train", "valid", "test")
    outs = [open(os.path.join(output, f"{n}.jsonl"), "w", encoding="utf-8") for n in names]
    try:
        for path in files:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    value = str(record.get(by) or record.get("key"))
                    side = 2 if held_out(value, test_share) else 1 if held_out(value, test_share + valid_share) else 0
                    outs[side].write(line if line.endswith("\n") else line + "\n")
                    counts[side] += 1
    finally:
        for f in outs:
            f.close()
    return counts[0], counts[1], counts[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asr_distill.retrieval.split", description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="a labelling run's --output directory")
    ap.add_argument("--test_share", type=float, default=0.1, help="share of source files held out for testing")
    ap.add_argument("--valid_share", type=float, default=0.1, help="share of source files held out for validation")
    ap.add_argument("--by", choices=["key", "speaker"], default="key", help="what is held out whole")
    args = ap.parse_args(argv)
    try:
        n_train, n_valid, n_test = split(args.output, args.test_share, args.by, args.valid_share)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{n_train} training chunks in {os.path.join(args.output, 'train.jsonl')}, "
          f"{n_valid} validation chunks in {os.path.join(args.output, 'valid.jsonl')}, "
          f"{n_test} test chunks in {os.path.join(args.output, 'test.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
