"""Glossary terms in a timed transcript, and the audio chunks around them (the retriever's data).

`TermMatcher` finds a glossary's terms (main forms and alternative forms) in a sequence of words:
words and terms are compared in the glossary's normalised form (NFKC, case-folded, punctuation
dropped: "Wi-Fi," is "wi fi"), a term may span several words, and overlapping matches are resolved
leftmost-longest (in "new york university" with "new york" and "york university" in the glossary,
"new york" is the hit and "university" is not a term). Scripts written without spaces between words
(Chinese, Japanese, Thai) are matched word by word as the ASR model split them.

`plan_chunks` turns a segment's hits into chunks: the term with the words within `context_s` of it
on each side (whole words, the nearer first), plus `margin_s` of audio before the first and after
the last (aligned word times run early by about 0.15 s: benchmarks/RESULTS.md), never longer than
`max_chunk_s`; each chunk lists every term said inside it. A hit that cannot become a chunk gets a
reason (`term_longer_than_chunk`; `at_segment_edge`: the term touches the audio's cut, so its
first or last sound may be missing). No-term chunks are runs of words without any term.

`align_words` gives a text's words their times in the audio by forced alignment with a Whisper model
(faster-whisper's cross-attention alignment: the same word times faster-whisper reports), so the
teacher's text gets word times whichever model wrote it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from asr_distill.glossary import Glossary, normalise

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Hit:
    term: str  # the glossary's main form
    form: str  # what was said, normalised (an alternative form, or the term)
    first: int  # index of its first and last word
    last: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ChunkPlan:
    start_s: float
    end_s: float
    term: Optional[str]  # the term the chunk is for; None: a no-term chunk
    terms: tuple[str, ...]  # every term said inside it
    text: str  # its words
    term_start_s: Optional[float] = None  # the term's own time (in the same clock as start_s)
    term_end_s: Optional[float] = None


class TermMatcher:
    def __init__(self, glossary: Glossary):
        self.forms: dict[tuple[str, ...], str] = {}
        for term in glossary.terms:
            self.forms[tuple(normalise(term).split())] = term
        for alt, main in glossary.alt2main.items():
            self.forms.setdefault(tuple(alt.split()), main)
        self.longest = max(len(k) for k in self.forms)

    def find(self, words: Sequence[Word]) -> list[Hit]:
        tokens = [(tok, i) for i, w in enumerate(words) for tok in normalise(w.text).split()]
        hits, at = [], 0
        while at < len(tokens):
            for n in range(min(self.longest, len(tokens) - at), 0, -1):
                key = tuple(t for t, _ in tokens[at:at + n])
                if key in self.forms:
                    first, last = tokens[at][1], tokens[at + n - 1][1]
                    hits.append(Hit(self.forms[key], " ".join(key), first, last, words[first].start_s,
                                    words[last].end_s))
                    at += n
                    break
            else:
                at += 1
        return hits

    def find_in_text(self, text: str) -> list[Hit]:
        """The hits of an untimed text (before paying for word times, or when timing failed)."""
        return self.find([Word(w, 0.0, 0.0) for w in text.split()])

    def in_text(self, text: str) -> bool:
        return bool(self.find_in_text(text))


def plan_chunks(words: Sequence[Word], hits: Sequence[Hit], duration_s: float, context_s: float = 1.0,
                max_chunk_s: float = 5.0, margin_s: float = 0.25, edge_s: float = 0.02
                ) -> tuple[list[ChunkPlan], Counter]:
    """A chunk per hit, or a reason in the returned Counter; times in the words' clock, within
    [0, duration_s]."""
    chunks, skipped = [], Counter()
    for hit in hits:
        if hit.end_s - hit.start_s > max_chunk_s:
            skipped["term_longer_than_chunk"] += 1
            continue
        if hit.start_s < edge_s or hit.end_s > duration_s - edge_s:
            skipped["at_segment_edge"] += 1
            continue
        first, last = hit.first, hit.last
        while True:  # grow by whole words, the nearer side first, within context_s and max_chunk_s
            options = []
            if first > 0 and hit.start_s - words[first - 1].start_s <= context_s:
                options.append((hit.start_s - words[first - 1].start_s, first - 1, last))
            if last + 1 < len(words) and words[last + 1].end_s - hit.end_s <= context_s:
                options.append((words[last + 1].end_s - hit.end_s, first, last + 1))
            options = [o for o in options if words[o[2]].end_s - words[o[1]].start_s + 2 * margin_s <= max_chunk_s]
            if not options:
                break
            _, first, last = min(options)
        chunks.append(_chunk(words, hits, first, last, duration_s, margin_s, hit))
    return chunks, skipped


def _chunk(words: Sequence[Word], hits: Sequence[Hit], first: int, last: int, duration_s: float,
           margin_s: float, hit: Optional[Hit]) -> ChunkPlan:
    start = max(0.0, words[first].start_s - margin_s)
    end = min(duration_s, words[last].end_s + margin_s)
    inside = tuple(dict.fromkeys(h.term for h in hits if h.first >= first and h.last <= last))
    return ChunkPlan(round(start, 3), round(end, 3), hit.term if hit else None, inside,
                     " ".join(w.text.strip() for w in words[first:last + 1]),
                     round(hit.start_s, 3) if hit else None, round(hit.end_s, 3) if hit else None)


def no_term_chunks(words: Sequence[Word], hits: Sequence[Hit], duration_s: float, count: int, seed: str,
                   length_s: float = 2.0, margin_s: float = 0.25) -> list[ChunkPlan]:
    """Up to `count` chunks of about `length_s` made of words that are no term, at places chosen by
    `seed` (a file's key: the same chunks on every run)."""
    said = {i for h in hits for i in range(h.first, h.last + 1)}
    runs, run = [], []
    for i in range(len(words)):
        if i in said:
            runs, run = runs + ([run] if run else []), []
        else:
            run.append(i)
    runs += [run] if run else []
    windows = []  # (first, last) of whole words, about length_s long, not overlapping
    for run in runs:
        i = 0
        while i < len(run):
            j = i
            while j + 1 < len(run) and words[run[j + 1]].end_s - words[run[i]].start_s <= length_s:
                j += 1
            windows.append((run[i], run[j]))
            i = j + 1
    rank = lambda w: hashlib.sha1(f"{seed}:{w}".encode()).digest()  # noqa: E731
    chosen = sorted(sorted(windows, key=rank)[:count])
    return [_chunk(words, hits, first, last, duration_s, margin_s, None) for first, last in chosen]


def no_term_count(ratio: float, hits: int, seed: str) -> int:
    """How many no-term chunks a segment gets for `ratio` per term chunk (at least one chance per
    segment): the whole part, plus one more with the fraction's probability, drawn from `seed`."""
    want = ratio * max(hits, 1)
    draw = int.from_bytes(hashlib.sha1(seed.encode()).digest()[:4], "big") / 2 ** 32
    return int(want) + (draw < want - int(want))


def align_words(model, audio: np.ndarray, text: str, language: str = "en") -> list[Word]:
    """The words of `text` with their times in `audio` (16 kHz, at most 30 s), by forced alignment with
    a faster-whisper `WhisperModel` (its cross-attention alignment, as faster-whisper times its own
    words). Empty when the text is."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    text = " ".join(text.split())
    if not text:
        return []
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                          language=language if model.model.is_multilingual else "en")
    features = model.feature_extractor(audio)[..., :-1]
    frames = min(features.shape[-1], 3000)
    encoded = model.encode(pad_or_trim(features))
    tokens = tokenizer.encode(" " + text)
    aligned = model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
    duration = len(audio) / SAMPLE_RATE
    words = [Word(w["word"].strip(), round(min(float(w["start"]), duration), 3),
                  round(min(float(w["end"]), duration), 3)) for w in aligned if w["word"].strip()]
    return words


def terms_digest(glossary: Glossary, cfg) -> str:
    """What decides a run's term chunks (its glossary and terms settings): a resumed run must match."""
    blob = json.dumps({"terms": list(glossary.terms), "alt2main": glossary.alt2main,
                       "cfg": cfg.model_dump(mode="json")}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def terms_section(counters: dict, records: Iterable[dict], glossary: Glossary) -> dict:
    """run.json's `terms`: this run's hits, chunks and skipped hits (reconciled: hits = chunks +
    skipped), and from the chunk records written (all runs of the output): chunks per term, the
    glossary terms never heard, chunk durations."""
    by_term: Counter = Counter()
    no_term, durations = 0, []
    for r in records:
        durations.append(float(r.get("duration_s") or 0.0))
        if r.get("term") is None:
            no_term += 1
        else:
            by_term[r["term"]] += 1
    skipped = {k[len("skipped_"):]: v for k, v in sorted(counters.items()) if k.startswith("skipped_") and v}
    hits, chunks = counters.get("hits", 0), counters.get("chunks", 0)
    align_s = counters.get("align_ms", 0) / 1000
    never = [t for t in glossary.terms if not by_term[t]]
    q = (lambda p: round(float(np.percentile(durations, p)), 2)) if durations else (lambda p: None)
    return {
        "glossary_terms": len(glossary), "hits": hits, "chunks": chunks,
        "no_term_chunks": counters.get("no_term_chunks", 0), "skipped": skipped,
        "reconciled": hits == chunks + sum(skipped.values()),
        "segments_aligned": counters.get("segments", 0), "align_s": round(align_s, 2),
        "segments_per_align_s": round(counters.get("segments", 0) / align_s, 2) if align_s else None,
        "written": {"term_chunks": sum(by_term.values()), "no_term_chunks": no_term,
                    "terms_heard": len(by_term), "chunk_s": {"min": q(0), "p50": q(50), "p95": q(95), "max": q(100)}},
        "chunks_by_term": dict(by_term.most_common()),
        "never_heard": {"count": len(never), "terms": never[:100]},
    }
