"""Word error rate of transcripts against the references in their `meta.reference_text`.

  python benchmarks/wer.py OUTPUT_DIR_OR_TRANSCRIPTS.jsonl [...]

Corpus-level WER (errors over all reference words), text normalised as the tests do (lower case,
letters and apostrophes only); prints one JSON line per input.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def transcripts(path: Path) -> list[dict]:
    files = sorted(path.glob("transcripts-*.jsonl")) if path.is_dir() else [path]
    text = "".join(gzip.decompress(f.read_bytes()).decode() if f.suffix == ".gz" else f.read_text() for f in files)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wer(records: list[dict]) -> dict:
    import jiwer
    from speechgen import normalize

    refs = [normalize(r["meta"]["reference_text"]) for r in records]
    hyps = [normalize(r["text"]) for r in records]
    out = jiwer.process_words(refs, hyps)
    return {"files": len(records), "reference_words": sum(len(r.split()) for r in refs),
            "wer": round(out.wer, 4), "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps({"input": arg, **wer(transcripts(Path(arg)))}))
