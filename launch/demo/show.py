"""Prints the demo's transcripts next to the text that was spoken, with the word error rate."""

import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from speechgen import word_error_rate  # noqa: E402

out = sys.argv[1]
for path in sorted(glob.glob(os.path.join(out, "transcripts-*.jsonl"))):
    for line in open(path):
        rec = json.loads(line)
        ref = rec["meta"].get("reference_text", "")
        wer = f"{word_error_rate(ref, rec['text']):.1%}" if ref else "n/a"
        print(f"\n{rec['key']} [{rec['status']}, {rec['duration_s']:.1f} s, "
              f"{len(rec['segments'])} segments, WER {wer}]\n  {rec['text']}")
print(f"\noutputs in {out}/: transcripts-*.jsonl, failures-*.jsonl, run.json")
