"""Term chunks (issue 27): glossary matching on timed words, chunk planning, and the CLI with
--glossary on espeak-ng speech whose term times are known."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import speechgen
from asr_distill.glossary import Glossary
from asr_distill.terms import TermMatcher, Word, no_term_chunks, no_term_count, plan_chunks
from conftest import read_jsonl, write_index

ROOT = Path(__file__).resolve().parents[1]


def _words(text: str, step: float = 0.5) -> list[Word]:
    return [Word(w, round(i * step, 3), round(i * step + 0.4, 3)) for i, w in enumerate(text.split())]


def test_terms_are_found_whatever_their_case_punctuation_form_or_script():
    glossary = Glossary.from_json({"terms": ["Wi-Fi", "New York", "York University", "machine learning", "Zürich",
                                             "café"],
                                   "alt2main": {"NYC": "New York", "ML": "machine learning"}})
    m = TermMatcher(glossary)
    words = _words("the WIFI is down, wi fi in new york university, NYC! Machine-learning in ZÜRICH's café")
    hits = m.find(words)
    assert [(h.term, h.form, h.first, h.last) for h in hits] == [
        ("Wi-Fi", "wi fi", 4, 5),  # "WIFI" is one word, not the term's two: not a hit
        ("New York", "new york", 7, 8),  # leftmost-longest: "york university" overlaps it and loses
        ("New York", "nyc", 10, 10),
        ("machine learning", "machine learning", 11, 11),  # one hyphenated word: still the two-word term
        ("Zürich", "zürich", 13, 13),  # ZÜRICH's: case-folded, the possessive apart
        ("café", "café", 14, 14),
    ]
    assert (hits[1].start_s, hits[1].end_s) == (words[7].start_s, words[8].end_s)
    assert [h.term for h in m.find(_words("CAFE\u0301 and cafe"))] == ["café"]  # NFKC: e + accent is é
    assert m.in_text("we met in nyc") and not m.in_text("new yorkers")


def test_chunks_take_context_words_within_the_limits_and_say_why_a_hit_has_none():
    words = _words("one two three TERM four five six seven", step=0.5)  # TERM at 1.5-1.9 s
    glossary = Glossary.from_json(["term", "six"])
    hits = TermMatcher(glossary).find(words)
    chunks, skipped = plan_chunks(words, hits, duration_s=4.0, context_s=1.0, max_chunk_s=5.0, margin_s=0.25)
    term, six = chunks
    # words within 1 s of the term: two (1.0) and three (0.5) before, four and five after
    assert term.text == "two three TERM four five" and term.term == "term" and term.terms == ("term",)
    assert (term.start_s, term.end_s) == (0.25, 3.15) and (term.term_start_s, term.term_end_s) == (1.5, 1.9)
    assert six.terms == ("six",) and six.text == "four five six seven"
    assert not skipped
    short, _ = plan_chunks(words, hits[:1], 4.0, context_s=1.0, max_chunk_s=1.5, margin_s=0.25)
    # three (0.5 s before) and four (0.5 s after) tie; the chunk holds one of them: 1.4 s, a second > 1.5 s
    assert short[0].text == "three TERM" and (short[0].start_s, short[0].end_s) == (0.75, 2.15)
    edge, why = plan_chunks(_words("TERM one"), TermMatcher(glossary).find(_words("TERM one")), 1.0)
    assert edge == [] and why == {"at_segment_edge": 1}  # starts at 0.0: cut by the segment's start
    long, why = plan_chunks(words, hits[:1], 4.0, max_chunk_s=0.3)
    assert long == [] and why == {"term_longer_than_chunk": 1}


def test_no_term_chunks_are_words_without_terms_at_places_fixed_by_the_key():
    words = _words("a b c d TERM e f g h i j k")
    hits = TermMatcher(Glossary.from_json(["term"])).find(words)
    first = no_term_chunks(words, hits, 6.0, count=2, seed="file-1", length_s=1.0)
    assert first == no_term_chunks(words, hits, 6.0, count=2, seed="file-1", length_s=1.0)
    assert len(first) == 2 and all(c.term is None and "TERM" not in c.text and c.terms == () for c in first)
    assert all(1 <= len(c.text.split()) <= 2 for c in first)  # whole words, at most about 1 s
    assert sum(no_term_count(0.3, 0, f"k{i}") for i in range(1000)) in range(250, 350)
    assert no_term_count(1.5, 2, "x") == 3


def test_a_bad_glossary_stops_the_cli_before_any_audio_is_read(tmp_path, short_speech_wav):
    index = write_index(tmp_path / "i.jsonl", [{"key": "short", "uri": str(short_speech_wav[0])}])
    (tmp_path / "g.json").write_text(json.dumps({"terms": ["ok", 3]}))
    out = subprocess.run([sys.executable, "-m", "beam_pipeline", f"--input_index={index}",
                          f"--output={tmp_path / 'o'}", f"--glossary={tmp_path / 'g.json'}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "term 1 is 3, not a non-empty string" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and not (tmp_path / "o").exists()


# -- the CLI on speech with known term times

TERMS = ["volcano", "chocolate", "telescope", "penguin", "hurricane", "marathon", "cathedral", "machine learning"]
CARRIERS = [("yesterday we talked about the", "again in the morning"), ("please bring the", "before lunch"),
            ("this is a", "for everyone here"), ("I think the", "is very important")]


@pytest.fixture(scope="module")
def term_files(tmp_path_factory):
    """Two files of four utterances each: carrier + term + carrier, said apart (so each term's true
    start and end are known), 0.8 s between utterances."""
    folder = tmp_path_factory.mktemp("term-files")
    truth, rows = [], []
    for f, voice in enumerate(["en-us", "en-gb"]):
        pieces, t = [np.zeros(8000, np.int16)], 0.5
        for u in range(4):
            term = TERMS[4 * f + u]
            before, after = CARRIERS[(u + f) % 4]
            for text in (before, term, after):
                pcm = speechgen.trim_silence(speechgen.speak_16k(text, voice, 160))
                if text == term:
                    truth.append((f"talk{f}", term, round(t, 3), round(t + len(pcm) / 16000, 3)))
                pieces += [pcm, np.zeros(1280, np.int16)]  # 80 ms between words
                t += (len(pcm) + 1280) / 16000
            pieces.append(np.zeros(12800, np.int16))
            t += 0.8
        speechgen.write_wav(folder / f"talk{f}.wav", np.concatenate(pieces + [np.zeros(8000, np.int16)]), 16000)
        rows.append({"key": f"talk{f}", "uri": str(folder / f"talk{f}.wav")})
    glossary = folder / "glossary.json"
    glossary.write_text(json.dumps({"terms": TERMS + ["saxophone", "algebra"], "alt2main": {"vulcano": "volcano"}}))
    return write_index(folder / "index.jsonl", rows), glossary, truth


def test_the_cli_cuts_term_chunks_the_trainer_reads(tmp_path, term_files):
    from asr_distill.retrieval.data import ChunkDataset, ChunkSet

    index, glossary, truth = term_files
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "beam_pipeline", "--quiet", f"--input_index={index}",
                           f"--output={out}", f"--glossary={glossary}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chunks = read_jsonl(out, "term_chunks")
    term_chunks = [c for c in chunks if c["term"] is not None]
    found = {(c["key"], c["term"]): c for c in term_chunks}
    assert len(found) == len(term_chunks)  # each occurrence once
    errors = []
    for key, term, start, end in truth:
        c = found[(key, term)]  # every term said is a chunk
        errors += [c["term_start_s"] - start, c["term_end_s"] - end]
        assert c["start_s"] <= start and end <= c["end_s"], (c, start, end)  # the whole term is inside
        assert c["end_s"] - c["start_s"] <= 5.0 and term in c["terms"]
        assert term.split()[0] in c["text"].lower()
    # word times by alignment run early by ~0.15 s, p95 under 0.3 s (benchmarks/RESULTS.md)
    assert max(abs(e) for e in errors) < 0.4 and abs(float(np.median(errors))) < 0.25, errors
    run = json.loads((out / "run.json").read_text())
    terms = run["terms"]
    assert terms["hits"] == len(truth) == terms["chunks"] + sum(terms["skipped"].values()) and terms["reconciled"]
    assert terms["never_heard"] == {"count": 2, "terms": ["saxophone", "algebra"]}
    assert terms["chunks_by_term"] == {t: 1 for t in TERMS}
    # a second run with --resume has nothing to do, and the chunks stay there once
    again = subprocess.run([sys.executable, "-m", "beam_pipeline", "--quiet", f"--input_index={index}",
                            f"--output={out}", f"--glossary={glossary}", "--resume"],
                           capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(map(json.dumps, read_jsonl(out, "term_chunks"))) == sorted(map(json.dumps, chunks))
    # the report shows them
    report = subprocess.run([sys.executable, "-m", "beam_pipeline.report", str(out)], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    page = (out / "report.html").read_text()
    assert "<h2>Terms</h2>" in page and "Never heard (2): saxophone, algebra" in page
    assert "<td>term chunks / no-term chunks written</td><td>8 / 0</td>" in page and "term chunk durations" in page
    assert "<td>0 = 0 + 0 {}</td>" in page  # the resumed run itself had nothing left to align
    # split by source file, and the trainer's loader reads them from the shards (paths relative to OUTPUT)
    split = subprocess.run([sys.executable, "-m", "asr_distill.retrieval.split", str(out), "--test_share=0.5"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert split.returncode == 0, split.stderr
    train, valid, test = (ChunkSet(out / f"{n}.jsonl", Glossary.load(glossary)) for n in ("train", "valid", "test"))
    assert len(train) + len(valid) + len(test) == len(chunks) and not (train.skipped or valid.skipped or test.skipped)
    sources = [{c.key.split("/")[0] for c in part.chunks} for part in (train, valid, test)]
    assert sources[0].isdisjoint(sources[1]) and sources[0].isdisjoint(sources[2]) and sources[1].isdisjoint(sources[2])
    loaded = train if len(train) else test
    _i, mel = ChunkDataset(loaded.chunks, 5.0)[0]
    assert mel.shape[1] == int(loaded.chunks[0].length / 2 / 160)
