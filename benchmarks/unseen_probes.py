"""Two ways to find terms never heard in training that need no training at all, as baselines for the term
retriever's unseen-term figure (issue 42), on a `term_corpus.py --enrol` corpus:

- `enrol`: every glossary term said alone by the enrolment voice, embedded by the frozen Whisper-base
  encoder (layers `--layers`, mean-pooled), each test chunk likewise; ranked by cosine (whole chunk, or
  the best window of the term's own length in the chunk);
- `asr`: the test chunk transcribed by the embedded model (faster-whisper, Whisper base), the transcript
  and every glossary term turned into eSpeak NG phonemes (asr_distill/pronounce.py), each term scored by
  its best-matching stretch of the transcript's phonemes (RapidFuzz's partial ratio).

Recall@1/5/10 against the whole glossary for test chunks whose term was / was not in training.

  python benchmarks/unseen_probes.py enrol --corpus DIR --hf-whisper DIR [--layers 3,4]
  python benchmarks/unseen_probes.py asr --corpus DIR [--chunks 300]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr_distill.glossary import Glossary  # noqa: E402
from asr_distill.retrieval.data import ChunkSet, chunk_audio  # noqa: E402


def recalls(ranks: list[int], unseen: list[bool]) -> dict:
    ranks, unseen = np.array(ranks), np.array(unseen)
    out = {}
    for name, sel in (("unseen", unseen), ("seen", ~unseen)):
        out[f"{name}_chunks"] = int(sel.sum())
        for k in (1, 5, 10):
            out[f"{name}_recall_at_{k}"] = round(float((ranks[sel] < k).mean()), 3) if sel.any() else None
    return out


def enrol(args, glossary, test, seen) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from transformers import WhisperModel

    from asr_distill.retrieval.data import LogMel

    torch.set_num_threads(2)
    layers = [int(x) for x in args.layers.split(",")]
    encoder = WhisperModel.from_pretrained(args.hf_whisper, dtype=torch.float32).get_encoder().eval()
    mel = LogMel()

    @torch.inference_mode()
    def frames(chunk):  # (T, 512): the chosen layers' states, averaged
        m = torch.from_numpy(mel(chunk_audio(chunk, 5.0)))[None]
        m = F.pad(m, (0, m.shape[2] % 2))
        x = F.gelu(encoder.conv2(F.gelu(encoder.conv1(m)))).transpose(1, 2)
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        states = []
        for layer in encoder.layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
            states.append(x[0])
        states.append(encoder.layer_norm(x)[0])
        return torch.stack([states[i] for i in layers]).mean(0)

    enrolled = list(ChunkSet(args.corpus / "enrol.jsonl", glossary))
    term_of = torch.tensor([c.term for c in enrolled])
    said = [frames(c) for c in enrolled]
    heard = [frames(c) for c in test]
    pooled = F.normalize(torch.stack([s.mean(0) for s in said]), dim=-1)
    lengths = torch.tensor([len(s) for s in said])

    def whole(x):
        return F.normalize(x.mean(0), dim=-1) @ pooled.T

    def best_window(x):  # each term: the chunk's best stretch as long as the term said alone
        sums = F.pad(x.cumsum(0), (0, 0, 1, 0))
        scores = torch.full((len(said),), -2.0)
        for n in lengths.unique().tolist():
            idx = (lengths == n).nonzero()[:, 0]
            n = min(n, len(x))
            windows = F.normalize((sums[n:] - sums[:-n]) / n, dim=-1)
            scores[idx] = (windows @ pooled[idx].T).max(0).values
        return scores

    lines = []
    for name, score in (("whole chunk", whole), ("best window", best_window)):
        ranks = []
        for x, chunk in zip(heard, test):
            full = torch.full((len(glossary),), -3.0)
            full[term_of] = score(x)
            ranks.append(int((full > full[chunk.term]).sum()))
        lines.append({"step": "unseen_probe", "way": f"enrol, frozen Whisper base layers {args.layers}, {name}",
                      "glossary_size": len(glossary), **recalls(ranks, [c.term not in seen for c in test])})
    return lines


def asr(args, glossary, test, seen, terms: list[str], pronunciations: dict) -> list[dict]:
    from faster_whisper import WhisperModel
    from rapidfuzz import fuzz, process

    from asr_distill.models import embedded_whisper_base
    from asr_distill.pronounce import phonemes

    def bare(p: str) -> str:  # eSpeak's stress and length marks off: sounds only
        return re.sub(r"[',%=_:!;\-]", "", p)

    said = [bare(pronunciations.get(t) or phonemes(t)) for t in terms]
    model = WhisperModel(str(embedded_whisper_base()), device="cpu", compute_type="int8", cpu_threads=2)
    ranks, spelled, asr_s, match_s = [], [], 0.0, 0.0
    for chunk in test:
        t = time.perf_counter()
        segments, _ = model.transcribe(chunk_audio(chunk, 5.0), language="en", beam_size=1,
                                       condition_on_previous_text=False, without_timestamps=True)
        text = " ".join(s.text for s in segments).strip()
        asr_s += time.perf_counter() - t
        t = time.perf_counter()
        scores = (process.cdist([bare(phonemes(text))], said, scorer=fuzz.partial_ratio)[0] if text
                  else np.zeros(len(said)))
        match_s += time.perf_counter() - t
        ranks.append(int((scores > scores[chunk.term]).sum()))
        spelled.append(terms[chunk.term].casefold() in text.casefold())
    unseen = [c.term not in seen for c in test]
    return [{"step": "unseen_probe", "way": "asr: Whisper base transcript, phoneme partial match",
             "glossary_size": len(glossary), **recalls(ranks, unseen),
             "spelled_right_by_asr": round(float(np.mean(spelled)), 3),
             "ms_per_chunk_asr": round(1000 * asr_s / len(test)), "ms_per_chunk_match": round(1000 * match_s / len(test))}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("way", choices=["enrol", "asr"])
    ap.add_argument("--corpus", type=Path, required=True, help="a term_corpus.py --enrol output directory")
    ap.add_argument("--hf-whisper", help="Whisper base as a Hugging Face directory (python -m asr_distill.models --hf DIR)")
    ap.add_argument("--layers", default="3,4", help="encoder layers averaged (6: after the final norm)")
    ap.add_argument("--chunks", type=int, default=0, help="test term chunks scored (0: all), drawn at random")
    ap.add_argument("--json", type=Path, help="append the result lines here")
    args = ap.parse_args()
    glossary = Glossary.load(args.corpus / "glossary.json")
    data = json.loads((args.corpus / "glossary.json").read_text())
    terms = data["terms"] if isinstance(data, dict) else data
    seen = {c.term for c in ChunkSet(args.corpus / "train.jsonl", glossary)}
    test = [c for c in ChunkSet(args.corpus / "test.jsonl", glossary) if c.term is not None]
    if args.chunks:
        random.Random(0).shuffle(test)
        test = test[: args.chunks]
    lines = (enrol(args, glossary, test, seen) if args.way == "enrol"
             else asr(args, glossary, test, seen, terms, data.get("pronunciations", {}) if isinstance(data, dict) else {}))
    for line in lines:
        print(json.dumps(line))
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
