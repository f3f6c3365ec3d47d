"""Term hints in the teacher's prompt, measured (issue 43): does a segment's transcript get its glossary
terms right more often when the retriever's terms are in the prompt?

  python benchmarks/term_hints.py --corpus TERMS --checkpoint RUN/final.pt --out term_hints.jsonl \
      [--glossary-size 10000] [--chunks 300] [--no-term-chunks 0] [--settings hint:1,run:1,0.45:1]

TERMS is a `benchmarks/term_corpus.py` corpus: its test chunks (voices never in training, each a
carrier sentence around one glossary term) are the speech, their `text` the truth. The glossary is
the corpus's, grown with distractors (English words of 6-12 letters from wordfreq, not in it) to
`--glossary-size`. Each chunk is transcribed by the embedded Whisper base (faster-whisper, the
pipeline's backend and options) three ways, side by side on the same audio:

- `none`: no hints (what the pipeline does without `--retriever`);
- `retriever`: the terms the trained retriever finds in the chunk (`TermFinder.hints`, as the
  pipeline's TermHints step calls it), as faster-whisper's `hotwords`; one way per `--settings` entry
  THRESHOLD:TOP_K (`hint`: the run's `hint_threshold`, chosen on validation, the pipeline's default;
  `run`: its `operating_threshold`, the default before it;
  named `retriever` for hint:1, the pipeline's defaults, else `retriever@THRESHOLD:TOP_K`);
- `oracle`: the chunk's true terms as hotwords (the ceiling).

One line per way: `term_recall` (spoken terms written in the transcript, as `TermMatcher` finds glossary
terms in a text), `wer` (corpus WER against the chunks' texts, Whisper's English normaliser), `hallucinated_terms`
(hinted terms not spoken but written, per chunk; `--no-term-chunks` adds chunks that say no glossary
term, where any hint is wrong) and `hallucinated_share_of_wrong_hints` (of the hinted
terms not spoken, the share written), `hint_recall` (spoken terms among the hints), `ms_per_segment`
(the retriever's scoring of one chunk against the whole glossary, CPU) and the glossary's size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr_distill.glossary import Glossary, normalise  # noqa: E402


def distractors(taken: set[str], n: int) -> list[str]:
    """n English words of 6-12 letters, by frequency, none of them (normalised) in `taken`."""
    from wordfreq import top_n_list

    out = []
    for word in top_n_list("en", 200000):
        if len(out) == n:
            break
        if word.isalpha() and word.isascii() and 6 <= len(word) <= 12 and normalise(word) not in taken:
            taken.add(normalise(word))
            out.append(word)
    return out


def spread(items: list, n: int) -> list:
    """n of `items`, evenly spaced (every voice and carrier of a split, not its first few)."""
    return items[::max(1, len(items) // n)][:n] if n > 0 else []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a benchmarks/term_corpus.py output folder")
    ap.add_argument("--checkpoint", required=True, help="a retriever trained on that corpus (final.pt)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--glossary-size", type=int, default=10000)
    ap.add_argument("--chunks", type=int, default=300, help="term chunks of the split, spread over it")
    ap.add_argument("--no-term-chunks", type=int, default=0,
                    help="also this many of the split's chunks that say no glossary term (where every hint is wrong)")
    ap.add_argument("--split", default="test", choices=["test", "valid"],
                    help="valid: choose the hint settings there (its own voice), then report them on test")
    ap.add_argument("--settings", default="hint:1", help="retriever hints as THRESHOLD:TOP_K, comma-separated")
    ap.add_argument("--ways", default="none,retriever,oracle", help="retriever: every --settings entry")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)

    import jiwer

    from asr_distill.asr.faster_whisper import FasterWhisperBackend
    from asr_distill.config import InferenceConfig
    from asr_distill.records import Segment
    from asr_distill.reference import normalise as text_normalise
    from asr_distill.retrieval.data import ChunkSet, chunk_audio
    from asr_distill.retrieval.find import TermFinder, best_terms, chosen_threshold
    from asr_distill.terms import TermMatcher

    raw = json.loads((args.corpus / "glossary.json").read_text())
    base = raw if isinstance(raw, dict) else {"terms": raw}
    terms = list(base["terms"])
    grown = terms + distractors({normalise(t) for t in terms}, max(0, args.glossary_size - len(terms)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    glossary_path = args.out.with_name(args.out.stem + f"-glossary-{len(grown)}.json")
    glossary_path.write_text(json.dumps({**base, "terms": grown}))
    glossary = Glossary.load(str(glossary_path))
    every = ChunkSet(args.corpus / f"{args.split}.jsonl", glossary).chunks
    chunks = spread([c for c in every if c.term is not None], args.chunks)
    chunks += spread([c for c in every if c.term is None], args.no_term_chunks)
    waves = [chunk_audio(c, 30.0) for c in chunks]
    spoken = [[glossary.terms[i] for i in c.terms] for c in chunks]

    finder = TermFinder(args.checkpoint, str(glossary_path), "cpu")
    run_threshold, hint_threshold = finder.threshold, chosen_threshold(args.checkpoint, "hint_threshold")
    named = {"run": run_threshold, "hint": hint_threshold}
    settings = [(named[t] if t in named else float(t), int(k), f"{t}:{k}")
                for t, k in (x.split(":") for x in args.settings.split(","))]
    if any(t is None for t, _, _ in settings):
        raise SystemExit(f"{args.checkpoint}: its run chose no hint_threshold (test.json)")
    finder.threshold = min(t for t, _, _ in settings)  # every hit at or above the lowest; each setting filters
    finder.find(waves[0])  # warm
    t0 = time.perf_counter()
    scored = [finder.best_scores(w) for w in waves]  # TermFinder.hints before its cut
    ms = 1000 * (time.perf_counter() - t0) / len(waves)
    hints = {"none": [()] * len(chunks), "oracle": [tuple(s) for s in spoken]}
    ways = []
    for way in args.ways.split(","):
        if way != "retriever":
            ways.append((way, None))
            continue
        for threshold, k, label in settings:
            name = "retriever" if label == "hint:1" else f"retriever@{label}"
            hints[name] = [best_terms(b, k, threshold) for b in scored]
            ways.append((name, (threshold, k)))

    backend = FasterWhisperBackend(InferenceConfig())
    matcher = TermMatcher(glossary)
    lines = []
    for way, setting in ways:
        segs = [Segment(c.key, 0, 0.0, len(w) / 16000, w, language="en", hints=h)
                for c, w, h in zip(chunks, waves, hints[way])]
        t0 = time.perf_counter()
        texts = [t.text for i in range(0, len(segs), args.batch) for t in backend.transcribe_batch(segs[i:i + args.batch])]
        asr_s = time.perf_counter() - t0
        said = sum(len(s) for s in spoken)
        written = [{hit.term for hit in matcher.find_in_text(text)} for text in texts]  # glossary terms in each
        got = sum(t in w for s, w in zip(spoken, written) for t in s)
        wrong = [(i, t) for i, (h, s) in enumerate(zip(hints[way], spoken)) for t in h if t not in s]
        unsaid = [{"truth": chunks[i].text, "text": texts[i], "hint": t} for i, t in wrong if t in written[i]]
        hallucinated = len(unsaid)
        refs = [text_normalise(c.text, "en") for c in chunks]
        hyps = [text_normalise(t, "en") or "" for t in texts]
        line = {"step": "term_hints", "way": way, "term_recall": round(got / said, 4),
                "wer": round(float(jiwer.wer(refs, hyps)), 4),
                "hallucinated_terms": round(hallucinated / len(chunks), 4),
                "hallucinated_share_of_wrong_hints": round(hallucinated / len(wrong), 4) if wrong else None,
                "wrong_hints": len(wrong), "hint_recall": round(sum(t in h for h, s in zip(hints[way], spoken) for t in s) / said, 4),
                "hints_per_segment": round(sum(len(h) for h in hints[way]) / len(chunks), 2),
                "glossary_size": len(grown), "segments": len(chunks), "spoken_terms": said,
                "no_term_segments": sum(not s for s in spoken),
                "ms_per_segment": round(ms, 1) if setting else None, "asr_s": round(asr_s, 1),
                "threshold": round(setting[0], 4) if setting else None, "top_k": setting[1] if setting else None,
                "run_threshold": round(run_threshold, 4), "hint_threshold": hint_threshold,
                "checkpoint": Path(args.checkpoint).parent.name,
                "split": args.split,
                "examples": [{"truth": c.text, "text": t, "hints": list(h)}
                             for c, t, h in list(zip(chunks, texts, hints[way]))[:3]],
                "hallucinations": unsaid}
        print(json.dumps(line), flush=True)
        lines.append(line)
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
