"""Training chunks of N of a corpus's training terms, for issue 42's curve: how never-heard recall grows with
the number of distinct terms trained on, from one staged corpus (`term_corpus.py`'s DIR).

  python benchmarks/train_subset.py DIR N [N ...]      # writes DIR/train-N.jsonl for each N

The N terms are drawn by the sha256 of their text: the same set on every machine, each smaller set inside
the larger ones. No-term chunks keep their share of the training chunks (drawn by their key). The held-out
terms the draw leaves out become never heard; a kept chunk that holds or says one of them (split.leaks:
a multi-word term that contains it, an alternative form) is dropped too, so the trainer's own leak check
passes. Prints one JSON line per N: terms, chunks, no-term chunks, chunks dropped for a leak.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_distill.glossary import Glossary  # noqa: E402
from asr_distill.retrieval.data import ChunkSet  # noqa: E402
from asr_distill.retrieval.split import leaks  # noqa: E402


def _rank(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def subset(folder: Path, n: int) -> dict:
    glossary = Glossary.load(folder / "glossary.json")
    train = ChunkSet(folder / "train.jsonl", glossary)
    held = [ChunkSet(folder / name, glossary).chunks for name in ("valid.jsonl", "test.jsonl")]
    records = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines() if line.strip()]
    if len(records) != len(train.chunks):
        raise SystemExit(f"{folder / 'train.jsonl'}: {len(records) - len(train.chunks)} records the trainer skips")
    terms = sorted(train.term_ids(), key=lambda i: _rank(glossary.terms[i]))
    if n > len(terms):
        raise SystemExit(f"{n} terms asked, the corpus trains {len(terms)}")
    kept_terms = set(terms[:n])
    no_term = sorted((i for i, c in enumerate(train.chunks) if c.term is None), key=lambda i: _rank(records[i]["key"]))
    keep = {i for i, c in enumerate(train.chunks) if c.term in kept_terms}
    keep |= set(no_term[:round(len(no_term) * n / len(terms))])
    dropped = 0
    while True:  # a chunk that holds or says a term now never heard goes too (its own term may then go)
        found = leaks([train.chunks[i] for i in sorted(keep)], held, glossary)["terms"]
        if not found:
            break
        bad = {key for _term, key in found}
        out = {i for i in keep if train.chunks[i].key in bad}
        keep -= out
        dropped += len(out)
    with open(folder / f"train-{n}.jsonl", "w", encoding="utf-8") as f:
        for i in sorted(keep):
            f.write(json.dumps(records[i]) + "\n")
    chunks = [train.chunks[i] for i in keep]
    return {"train_terms": len({c.term for c in chunks if c.term is not None}), "chunks": len(chunks),
            "no_term_chunks": sum(c.term is None for c in chunks), "dropped_for_leaks": dropped,
            "file": f"train-{n}.jsonl"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a term corpus: glossary.json, train/valid/test.jsonl, shards")
    ap.add_argument("terms", type=int, nargs="+", help="how many training terms each subset keeps")
    args = ap.parse_args(argv)
    for n in args.terms:
        print(json.dumps({"terms_asked": n, **subset(args.folder, n)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
