"""The trained term retriever as a tool: which glossary terms are spoken where in some audio (issue 43).

  python -m asr_distill.retrieval.find --checkpoint RUN/final.pt --glossary GLOSSARY.json \
      [--out hits.jsonl] [--threshold T] [--top-k 5] [--window-s S] [--hop-s H] [--no-vad] AUDIO_OR_INDEX.jsonl ...

Each file is decoded to 16 kHz mono, its speech found by Silero VAD (the pipeline's defaults; `--no-vad`:
the whole file), and cut into overlapping windows (`--window-s`, every `--hop-s`); only windows that
overlap speech are scored, so silence, music and noise give no hits and cost nothing.
The retriever was trained on chunks of about a term and its neighbours, so a window is by default as
long as its training chunks' median (`chunk_s` in the checkpoint; 2 s for a checkpoint without it),
every quarter of that: a window much longer than a chunk is mostly other words or silence, and scores
its term lower (measured on the test suite's model, whose chunks are single words: 0.41 at 2 s,
0.58 at 1 s for "saxophone"). Every window's audio
embedding is scored against every glossary term's; a term among a window's `--top-k` best that scores
at least the threshold is a hit, and a term's hits in overlapping or touching windows are one span
(its best score). The threshold defaults to the one the training run chose on validation (`test.json`'s
`operating_threshold` beside the checkpoint), else the config's `train.no_term_threshold`.

The glossary's term embeddings are computed once per checkpoint and glossary and cached beside the
checkpoint (`CHECKPOINT.glossary-DIGEST.pt`): a second run loads neither the text tower nor the
terms' encoders. `TermFinder` is what a pipeline step calls, per segment, on a worker.

Output: one JSON line per hit, `{"key", "uri", "term", "start_s", "end_s", "score"}`, in time order per
file. A file that cannot be read is reported on stderr with its stage and the run exits 1 after the
others.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from asr_distill.glossary import Glossary, GlossaryError
from asr_distill.records import Region
from asr_distill.retrieval import data as rdata
from asr_distill.retrieval.config import RetrieverConfig
from asr_distill.retrieval.evaluate import glossary_embeddings, top_terms
from asr_distill.retrieval.model import build

log = logging.getLogger("asr_distill.retrieval")


DEFAULT_WINDOW_S = 2.0  # a checkpoint that does not say its chunks' length


@dataclass(frozen=True)
class Hit:
    term: str
    start_s: float
    end_s: float
    score: float


class TermFinder:
    """A checkpoint's audio tower and a glossary's term embeddings, ready to score audio."""

    def __init__(self, checkpoint: str | Path, glossary: str | Path, device: str = "cpu",
                 threshold: Optional[float] = None, top_k: int = 5, window_s: Optional[float] = None,
                 hop_s: Optional[float] = None, batch_size: int = 32):
        self.checkpoint, self.device = Path(checkpoint), torch.device(device)
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        window_s = window_s or state.get("chunk_s") or DEFAULT_WINDOW_S
        hop_s = hop_s or window_s / 4
        if not 0 < hop_s <= window_s:
            raise ValueError(f"hop_s {hop_s} must be in (0, window_s {window_s}]")
        self.cfg = RetrieverConfig.model_validate(state["config"])
        self.glossary = Glossary.load(glossary)
        self.model, _ = build(self.cfg.model, self.device, text_tower=False)
        self.terms = self._term_embeddings(Path(glossary), state["model"])
        self.model.load_state_dict(state["model"], strict=False)
        self.model.eval()
        self.threshold = self._threshold() if threshold is None else threshold
        self.top_k, self.window_s, self.hop_s, self.batch_size = top_k, window_s, hop_s, batch_size
        self._mel = rdata.LogMel(self.model.audio.n_mels)

    def _term_embeddings(self, glossary_path: Path, trained: dict) -> torch.Tensor:
        """Every glossary term's embedding, from the cache beside the checkpoint when it has them."""
        digest = hashlib.sha256(self.checkpoint.read_bytes() + glossary_path.read_bytes()).hexdigest()[:16]
        cache = self.checkpoint.with_name(f"{self.checkpoint.name}.glossary-{digest}.pt")
        if cache.exists():
            return torch.load(cache, map_location=self.device)
        from asr_distill.retrieval.model import TextTower, default_text_model
        from asr_distill.retrieval.train import readings

        model_cfg = self.cfg.model
        text = TextTower(model_cfg.text_model or default_text_model()).to(self.device)
        self.model.set_glossary(self.glossary.terms, text.embed(list(self.glossary.terms)), model_cfg.spelling_buckets,
                                model_cfg.char_layers, model_cfg.char_width, readings(model_cfg, self.glossary),
                                meaning=model_cfg.term_meaning)
        self.model.load_state_dict(trained, strict=False)  # the terms' encoders' trained weights
        terms = glossary_embeddings(self.model).float()
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")  # a pipeline's workers may all write it at once
        torch.save(terms.cpu(), tmp)
        tmp.replace(cache)
        return terms

    def _threshold(self) -> float:
        chosen = chosen_threshold(self.checkpoint, "operating_threshold")
        return self.cfg.train.no_term_threshold if chosen is None else chosen

    def windows(self, n_samples: int, speech: Optional[list[Region]] = None) -> list[tuple[int, int]]:
        return windows(n_samples, self.window_s, self.hop_s, speech)

    @torch.no_grad()
    def find(self, wave: np.ndarray, speech: Optional[list[Region]] = None) -> list[Hit]:
        """The glossary terms spoken in 16 kHz mono `wave`, with their times (seconds from its start).
        `speech`: where a VAD heard speech; a window that overlaps none of it is not scored (None: all are)."""
        spans = [w for w in self.windows(len(wave), speech) if w[1] - w[0] >= 2 * rdata.HOP * 2]  # a few frames at least
        if not spans:
            return []
        embedded = []
        for i in range(0, len(spans), self.batch_size):
            items = [(j, self._mel(wave[s:e])) for j, (s, e) in enumerate(spans[i:i + self.batch_size])]
            batch = rdata.collate(items)
            embedded.append(self.model.embed_audio(batch["mel"].to(self.device), batch["frames"].to(self.device)))
        scores, indices = top_terms(torch.cat(embedded).float(), self.terms, self.top_k)
        found: dict[int, list[list[float]]] = {}  # term -> its spans [start_s, end_s, score]
        for (s, e), row_s, row_i in zip(spans, scores.tolist(), indices.tolist()):
            for score, term in zip(row_s, row_i):
                if score < self.threshold:
                    continue
                start, end = s / rdata.SAMPLE_RATE, e / rdata.SAMPLE_RATE
                runs = found.setdefault(term, [])
                if runs and start <= runs[-1][1]:  # overlaps or touches the term's last span
                    runs[-1][1], runs[-1][2] = end, max(runs[-1][2], score)
                else:
                    runs.append([start, end, score])
        hits = [Hit(self.glossary.terms[t], round(a, 3), round(b, 3), round(c, 4))
                for t, runs in found.items() for a, b, c in runs]
        return sorted(hits, key=lambda h: (h.start_s, -h.score))

    def best_scores(self, wave: np.ndarray) -> dict[str, float]:
        """Every term found in `wave` (`find`), with its best score."""
        best: dict[str, float] = {}
        for hit in self.find(wave):
            best[hit.term] = max(best.get(hit.term, hit.score), hit.score)
        return best

    def hints(self, wave: np.ndarray, top_k: int) -> tuple[str, ...]:
        """The terms to hint to the teacher for one segment: every term found in it, best first, at most
        `top_k`."""
        return best_terms(self.best_scores(wave), top_k)


def windows(n_samples: int, window_s: float, hop_s: float, speech: Optional[list[Region]] = None
            ) -> list[tuple[int, int]]:
    """(start, end) samples of each window of `window_s` every `hop_s`; the last ends at the audio's end;
    short audio is one. With `speech` (where a VAD heard it), only the windows that overlap some of it."""
    size, hop = int(window_s * rdata.SAMPLE_RATE), int(hop_s * rdata.SAMPLE_RATE)
    if n_samples <= size:
        spans = [(0, n_samples)]
    else:
        spans = [(s, s + size) for s in list(range(0, n_samples - size, hop)) + [n_samples - size]]
    if speech is None:
        return spans
    heard = [(r.start_s * rdata.SAMPLE_RATE, r.end_s * rdata.SAMPLE_RATE) for r in speech]
    return [(s, e) for s, e in spans if any(a < e and s < b for a, b in heard)]


def chosen_threshold(checkpoint: str | Path, name: str) -> Optional[float]:
    """A threshold the checkpoint's training run chose on validation (`test.json` beside it):
    `operating_threshold` (keeps 95% of term chunks: finding terms) or `hint_threshold` (three hints in
    four right: the teacher's hints); None when the run did not say (no test.json, or a run from before
    that figure); infinity when it said none reaches it (null: no score at which three hints in four were
    right on validation), so nothing passes it."""
    chosen = Path(checkpoint).parent / "test.json"
    said = json.loads(chosen.read_text()) if chosen.exists() else {}
    if name not in said:
        return None
    return math.inf if said[name] is None else float(said[name])


def best_terms(scores: dict[str, float], top_k: int, threshold: Optional[float] = None) -> tuple[str, ...]:
    """The terms of `scores` (term -> best score) at or above `threshold`, best first, at most `top_k`."""
    kept = [t for t in scores if threshold is None or scores[t] >= threshold]
    return tuple(sorted(kept, key=lambda t: (-scores[t], t))[:top_k])


_SHARED: dict[tuple, TermFinder] = {}
_SHARED_LOCK = threading.Lock()


def shared_finder(checkpoint: str, glossary: str, device: str = "cpu", threshold: Optional[float] = None
                  ) -> TermFinder:
    """One TermFinder per process for a checkpoint, glossary, device and threshold, shared by the
    process's DoFn instances (it keeps no state between calls)."""
    key = (str(checkpoint), str(glossary), device, threshold)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = TermFinder(checkpoint, glossary, device, threshold)
        return _SHARED[key]


def _inputs(paths: list[str]) -> Iterator[tuple[str, str]]:
    """(key, uri) of each media file named, or of each row of a JSONL index named."""
    from asr_distill.index import default_key, parse_index_row, parse_json_line

    for path in paths:
        if path.endswith(".jsonl"):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = parse_index_row(parse_json_line(line), path)
                        yield row.key, row.uri
        else:
            yield default_key(path), path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asr_distill.retrieval.find", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="media files, or JSONL indexes of them (key, uri)")
    ap.add_argument("--checkpoint", required=True, help="a trained retriever (final.pt of a training run)")
    ap.add_argument("--glossary", required=True, help="glossary JSON: a list of terms or {terms, alt2main, ...}")
    ap.add_argument("--out", help="JSONL of hits (default: stdout)")
    ap.add_argument("--threshold", type=float, help="least score of a hit (default: the run's operating threshold)")
    ap.add_argument("--top-k", type=int, default=5, help="terms considered per window")
    ap.add_argument("--window-s", type=float, help="window length (default: the training chunks' median)")
    ap.add_argument("--hop-s", type=float, help="window step (default: a quarter of the window)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-vad", action="store_true", help="score every window, speech or not")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from asr_distill.config import VadConfig
    from asr_distill.media import DecodeError, decode_to_mono16k
    from asr_distill.vad import SileroVad

    try:
        finder = TermFinder(args.checkpoint, args.glossary, args.device, args.threshold, args.top_k, args.window_s,
                            args.hop_s)
        vad = None if args.no_vad else SileroVad(VadConfig())
    except (OSError, GlossaryError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = failed = n_windows = n_scored = hits = 0
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for key, uri in _inputs(args.inputs):
            files += 1
            try:
                wave = decode_to_mono16k(uri)
            except (DecodeError, OSError) as err:
                failed += 1
                print(json.dumps({"key": key, "uri": uri, "stage": "decode", "error_type": type(err).__name__,
                                  "message": str(err)}), file=sys.stderr)
                continue
            speech = None if vad is None else vad.speech_regions(wave)
            n_windows += len(finder.windows(len(wave)))
            n_scored += len(finder.windows(len(wave), speech))
            for hit in finder.find(wave, speech):
                out.write(json.dumps({"key": key, "uri": uri, **hit.__dict__}) + "\n")
                hits += 1
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"find: {files} files ({failed} failed), {n_scored} of {n_windows} windows scored"
          f"{'' if vad is None else ' (the others heard no speech)'}, {hits} hits", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
