"""A term-chunk corpus for the retriever's full run (issue 26): glossary terms said by espeak-ng in
carrier phrases, in the layout the trainer reads (`launch/config/retriever.yaml`'s data section).

  python benchmarks/term_corpus.py --out DIR [--terms 700] [--unseen 100] [--unseen-valid 100]
                                   [--distractors 400] [--no-term-test 100] [--seed 0]
  python benchmarks/term_corpus.py --out DIR --extend N [--train-voices 3]   # N distractors said in training too
  python benchmarks/term_corpus.py --out DIR --contexts     # the training terms said again in contexts of their own too

Terms: English words of 6-12 letters from wordfreq's list (`pip install wordfreq`), ranks 1500-40000
(`--pool`; glossary-like: real but not everyday), no two that espeak-ng pronounces the same; with
`--multiword S`, a share S of the terms are two such words (each word in one term only). Of the spoken
terms, `--unseen` are held out entirely (test only) and `--unseen-valid` others are said in the
validation voice only; `--distractors` more are in the glossary and never spoken, so each chunk is
ranked against the whole glossary (terms + distractors).

Train: every seen term in each of six voices (voice, variant, rate, pitch), each time in a carrier
phrase drawn from six; no-term chunks at 1 in 10. Test: every seen term and the test's unseen ones in
two voices never heard in training, in carriers of their own, and `--no-term-test` no-term chunks per
voice. Validation (what the trainer chooses on): the seen terms and its own unseen ones in a third
accent, carriers of its own, as many no-term chunks. A no-term chunk says 3-6 everyday words (wordfreq's first 1500, where no term comes from),
each phrase drawn afresh: none is said twice, and the test's are not the training's.

Writes DIR/shard-0.dat (16 kHz int16, back to back, the packed-shard format), DIR/train.jsonl,
DIR/valid.jsonl and DIR/test.jsonl (key, uri `shard-0.dat#offset=O&length=L`, term, terms, text, speaker),
with `--enrol` DIR/enrol.jsonl (each glossary term said alone in one more voice: data.enrol_chunks),
DIR/glossary.json ({"terms": [...], "pronunciations": {...}}) and DIR/corpus.json (what was made).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import speechgen  # noqa: E402  (the test suite's espeak-ng helpers)

TRAIN_VOICES = [("en-us", 160, 50), ("en-gb+m3", 170, 40), ("en-gb-x-rp+f2", 155, 60), ("en-us+m7", 185, 45),
                ("en-029+f4", 150, 55), ("en-gb-x-gbclan+m2", 175, 50)]
TEST_VOICES = [("en-gb-scotland+m4", 165, 50), ("en-us-nyc+f3", 170, 58)]  # never heard in training
VALID_VOICES = [("en-gb-x-gbcwmd+f1", 165, 55)]  # nor this one, nor in test
ENROL_VOICE = ("en-us+klatt2", 165, 50)  # --enrol: every glossary term said alone, by a voice of no split
TRAIN_CARRIERS = ["{t}", "the {t}", "we need the {t} now", "say {t} again", "a {t} is here", "I like {t}"]
TEST_CARRIERS = ["this is the {t}", "{t} please", "about {t} today"]
VALID_CARRIERS = ["here is {t}", "{t} once more", "look at the {t}"]
EVERYDAY = 1500  # wordfreq ranks below this make no-term phrases; terms come from above it


def pick_terms(n: int, seed: int, pool: int = 40000) -> list[str]:
    """n distinct words of wordfreq's first `pool`, no two pronounced alike by espeak-ng."""
    from wordfreq import top_n_list

    words = [w for w in top_n_list("en", pool)[EVERYDAY:] if w.isascii() and w.isalpha() and 6 <= len(w) <= 12]
    random.Random(seed).shuffle(words)
    words = words[: n * 2]
    phonemes = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us"], input="".join(w + ".\n" for w in words),
                              capture_output=True, text=True, check=True).stdout.split()
    if len(phonemes) != len(words):  # one clause per line; if espeak-ng merged any, keep the spellings only
        phonemes = words
    seen, out = set(), []
    for word, ph in zip(words, phonemes):
        if ph not in seen and word not in out:
            seen.add(ph)
            out.append(word)
        if len(out) == n:
            return out
    raise SystemExit(f"only {len(out)} distinct terms found (a larger --pool finds more)")


def with_multiword(words: list[str], n: int, share: float, seed: int) -> list[str]:
    """n terms from `words` in order, `share` of them two words long (each word in one term only,
    so a term never heard shares no word with one that is), the rest single words."""
    rng, out, it = random.Random(seed + 1), [], iter(words)
    for _ in range(n):
        out.append(f"{next(it)} {next(it)}" if rng.random() < share else next(it))
    return out


def no_term_phrases(n: int, rng: random.Random, taken: set) -> list[str]:
    """n phrases of 3-6 everyday words, none in `taken` (which they join)."""
    common = everyday_words()
    out = []
    while len(out) < n:
        phrase = " ".join(rng.sample(common, rng.randint(3, 6)))
        if phrase not in taken:
            taken.add(phrase)
            out.append(phrase)
    return out


def speak(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """16 kHz int16 samples of one phrase in one voice."""
    return speechgen.speak_16k(text, voice, rate, pitch)


def plan(terms: list[str], unseen: int, seed: int, no_term_test: int = 100,
         unseen_valid: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(seed)
    phrases: set = set()

    def rows(voices, name, tag, spoken, carriers, no_term):
        out = []
        for v, voice in enumerate(voices):
            speaker = f"{name}{v}:{voice[0]}"
            said = [(f"{t}-{tag}{v}", t, rng.choice(carriers).format(t=t)) for t in spoken]
            said += [(f"none{i}-{tag}{v}", None, text) for i, text in enumerate(no_term(v))]
            out += [{"key": key, "term": t, "terms": [t] if t else [], "text": text, "speaker": speaker,
                     "_say": (text, *voice)} for key, t, text in said]
        return out

    # the first `unseen` terms are said in the test voices only, the next `unseen_valid` in the validation voice
    held, held_valid, seen = terms[:unseen], terms[unseen:unseen + unseen_valid], terms[unseen + unseen_valid:]
    train = rows(TRAIN_VOICES, "train", "", seen, TRAIN_CARRIERS,
                 lambda v: no_term_phrases(len(seen) // 10, rng, phrases))
    test = rows(TEST_VOICES, "test", "test", held + seen, TEST_CARRIERS,
                lambda v: no_term_phrases(no_term_test, rng, phrases))
    valid = rows(VALID_VOICES, "valid", "valid", held_valid + seen, VALID_CARRIERS,
                 lambda v: no_term_phrases(no_term_test, rng, phrases))
    return train, valid, test


def say_into_shard(rows: list[dict], shard: Path, workers: int) -> list[np.ndarray]:
    """Each row's `_say` spoken (in `workers` threads) and written to `shard` back to back; the row's `uri`
    is its range there and `_say` is dropped. Returns the samples, row by row."""
    with ThreadPoolExecutor(workers) as pool:
        audio = list(pool.map(lambda r: speak(*r["_say"]), rows))
    at = 0
    with open(shard, "wb") as f:
        for row, pcm in zip(rows, audio):
            data = pcm.tobytes()
            f.write(data)
            row["uri"] = f"{shard.name}#offset={at}&length={len(data)}"
            at += len(data)
            del row["_say"]
    return audio


def read_corpus(folder: Path) -> tuple[list[str], dict]:
    """A corpus's glossary terms and its train, valid and test records."""
    glossary = json.loads((folder / "glossary.json").read_text())["terms"]
    return glossary, {name: [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()
                             if line.strip()] for name in ("train", "valid", "test")}


def write_training(folder: Path, name: str, rows: list[dict]) -> None:
    """DIR/name: another training file for a corpus; refused (SystemExit, nothing written) if a chunk of it
    says a held-out term or is said by a held-out speaker."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from asr_distill.glossary import Glossary
    from asr_distill.retrieval.data import ChunkSet
    from asr_distill.retrieval.split import leaks

    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    g = Glossary.load(folder / "glossary.json")
    found = leaks(ChunkSet(path, g).chunks, [ChunkSet(folder / f"{s}.jsonl", g).chunks for s in ("valid", "test")], g)
    if found["terms"] or found["speakers"]:
        path.unlink()
        raise SystemExit(f"the new chunks would leak held-out terms or speakers: {found}")


def everyday_words() -> list[str]:
    """wordfreq's first EVERYDAY words (where no term comes from): no-term phrases and contexts."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", EVERYDAY) if w.isascii() and w.isalpha()]


def context_words(words: list[str]) -> list[str]:
    """The words a term is said among (--contexts): `words` less every word of the validation and test
    carriers (their contexts stay unheard)."""
    held = {w for c in VALID_CARRIERS + TEST_CARRIERS for w in c.replace("{t}", " ").split()}
    return [w for w in words if w not in held]


CONTEXT_MOST = 3  # --contexts: at most this many words before a term, and as many after


def in_context(term: str, rng: random.Random, words: list[str], most: int = CONTEXT_MOST) -> str:
    """The term with 0..most everyday words before it and 0..most after, drawn afresh."""
    return " ".join(rng.choices(words, k=rng.randint(0, most)) + [term] + rng.choices(words, k=rng.randint(0, most)))


def contexts(folder: Path, seed: int, workers: int) -> int:
    """The corpus's training terms said again, each chunk in a context of its own (in_context) beside the
    six training carriers, in the same voice: a model that heard a term only after "the" or before "now"
    may not find it before "please" (issue 42: the test's carriers were its weak point; with these too, seen
    and never-heard terms rose, benchmarks/RESULTS.md 2026-12-07). Writes DIR/shard-2.dat,
    DIR/train-context.jsonl (train.jsonl's chunks, then these: the training file) and DIR/context.json;
    validation, test and the glossary are unchanged."""
    _glossary, records = read_corpus(folder)
    voices = {f"train{v}:{voice[0]}": voice for v, voice in enumerate(TRAIN_VOICES)}
    rng, words = random.Random(seed + 3), context_words(everyday_words())
    rows = []
    for r in records["train"]:
        if r["term"]:
            text = in_context(r["term"], rng, words)
            rows.append({**{k: v for k, v in r.items() if k != "uri"}, "key": f"{r['key']}-ctx", "text": text,
                         "_say": (text, *voices[r["speaker"]])})
    audio = say_into_shard(rows, folder / "shard-2.dat", workers)
    write_training(folder, "train-context.jsonl", records["train"] + rows)
    info = {"term_chunks": len(rows), "context_words": len(words), "most_each_side": CONTEXT_MOST,
            "chunk_s_mean": round(sum(len(a) for a in audio) / 16000 / max(1, len(rows)), 2),
            "audio_s": round(sum(len(a) for a in audio) / 16000, 1), "seed": seed}
    (folder / "context.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


def extend(folder: Path, n: int, voices: int, seed: int, workers: int) -> int:
    """More training terms for a corpus, its validation, test and glossary as they are (issue 42's curve:
    the same test, against the same glossary, trained on more distinct terms): n of its distractors (by
    the sha256 of their text) said in the first `voices` training voices, in the training carriers, with
    no-term chunks at 1 in 10 (phrases none of the corpus's). Writes DIR/shard-1.dat, DIR/train-plus.jsonl
    (train.jsonl's chunks, then these) and DIR/extend.json. The terms were distractors: fewer remain."""
    import hashlib

    glossary, records = read_corpus(folder)
    spoken = {r["term"] for part in records.values() for r in part if r["term"]}
    distractors = sorted(set(glossary) - spoken, key=lambda t: hashlib.sha256(t.encode()).digest())
    if n > len(distractors):
        raise SystemExit(f"{n} terms asked, the corpus has {len(distractors)} distractors")
    rng, phrases = random.Random(seed + 2), {r["text"] for part in records.values() for r in part}
    terms, rows = distractors[:n], []
    for v, voice in enumerate(TRAIN_VOICES[:voices]):
        speaker = f"train{v}:{voice[0]}"
        said = [(f"{t}-plus{v}", t, rng.choice(TRAIN_CARRIERS).format(t=t)) for t in terms]
        said += [(f"none{i}-plus{v}", None, text) for i, text in enumerate(no_term_phrases(n // 10, rng, phrases))]
        rows += [{"key": key, "term": t, "terms": [t] if t else [], "text": text, "speaker": speaker,
                  "_say": (text, *voice)} for key, t, text in said]
    audio = say_into_shard(rows, folder / "shard-1.dat", workers)
    write_training(folder, "train-plus.jsonl", records["train"] + rows)
    info = {"extra_terms": n, "extra_voices": [v[0] for v in TRAIN_VOICES[:voices]], "extra_chunks": len(rows),
            "train_terms": len({r["term"] for r in records["train"] + rows if r["term"]}),
            "train_chunks": len(records["train"]) + len(rows), "distractors_left": len(distractors) - n,
            "audio_s": round(sum(len(a) for a in audio) / 16000, 1), "seed": seed}
    (folder / "extend.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--terms", type=int, default=700, help="spoken terms (seen + unseen)")
    ap.add_argument("--unseen", type=int, default=100, help="spoken terms held out of training, said in test")
    ap.add_argument("--unseen-valid", type=int, default=100, help="others held out, said in validation")
    ap.add_argument("--distractors", type=int, default=400, help="glossary terms never spoken")
    ap.add_argument("--no-term-test", type=int, default=100, help="no-term test chunks per test voice")
    ap.add_argument("--multiword", type=float, default=0.0, help="share of terms two words long")
    ap.add_argument("--train-voices", type=int, default=len(TRAIN_VOICES), help="the first N training voices")
    ap.add_argument("--pool", type=int, default=40000, help="wordfreq ranks terms are drawn from (more terms: more)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--enrol", action="store_true",
                    help="also enrol.jsonl: every glossary term said alone in a voice of its own (data.enrol_chunks)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--extend", type=int, metavar="N",
                    help="--out is a corpus already made: N of its distractors are said in training too (--train-voices)")
    ap.add_argument("--contexts", action="store_true",
                    help="--out is a corpus already made: its training terms said again, each in a context of "
                         "everyday words of its own (shard-2.dat; train-context.jsonl: train.jsonl's chunks and these)")
    args = ap.parse_args(argv)
    if args.contexts:
        return contexts(args.out, args.seed, args.workers)
    if args.extend:
        return extend(args.out, args.extend, args.train_voices, args.seed, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    n = args.terms + args.distractors
    words = with_multiword(pick_terms(int(n * (1 + 1.1 * args.multiword)) + 20, args.seed, args.pool), n,
                           args.multiword, args.seed)
    spoken, distractors = words[: args.terms], words[args.terms:]
    TRAIN_VOICES[:] = TRAIN_VOICES[: args.train_voices]
    train, valid, test = plan(spoken, args.unseen, args.seed, args.no_term_test, args.unseen_valid)
    glossary = sorted(spoken + distractors)
    enrol = [{"key": f"{t}-enrol", "term": t, "terms": [t], "text": t, "speaker": f"enrol:{ENROL_VOICE[0]}",
              "_say": (t, *ENROL_VOICE)} for t in glossary] if args.enrol else []
    rows = train + valid + test + enrol
    audio = say_into_shard(rows, args.out / "shard-0.dat", args.workers)
    for name, part in (("train", train), ("valid", valid), ("test", test), ("enrol", enrol)):
        if part:
            (args.out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    # with each term's phonemes (eSpeak NG's, as model.char_input: phonemes reads them): the GPU
    # machine that trains on this corpus has no espeak-ng
    from asr_distill.pronounce import pronunciations

    sounds = dict(zip(glossary, pronunciations(glossary)))
    (args.out / "glossary.json").write_text(json.dumps({"terms": glossary, "pronunciations": sounds}, indent=0))
    seconds = [len(a) / 16000 for a in audio]
    info = {"glossary_terms": len(glossary), "spoken_terms": len(spoken), "unseen_terms": args.unseen,
            "unseen_valid_terms": args.unseen_valid,
            "distractors": len(distractors), "multiword_terms": sum(" " in t for t in words),
            "train_chunks": len(train), "valid_chunks": len(valid),
            "test_chunks": len(test), "enrol_chunks": len(enrol),
            "no_term_train_chunks": sum(r["term"] is None for r in train),
            "no_term_test_chunks": sum(r["term"] is None for r in test),
            "train_voices": [v[0] for v in TRAIN_VOICES], "valid_voices": [v[0] for v in VALID_VOICES],
            "test_voices": [v[0] for v in TEST_VOICES], "enrol_voice": ENROL_VOICE[0] if enrol else None,
            "chunk_s": {"min": round(min(seconds), 2), "mean": round(float(np.mean(seconds)), 2),
                        "max": round(max(seconds), 2)}, "audio_s": round(sum(seconds), 1), "seed": args.seed}
    (args.out / "corpus.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
