"""End-to-end CPU throughput: our pipeline (DirectRunner) vs faster-whisper's BatchedInferencePipeline.

Same generated long-form files, same model (embedded Whisper base, int8), same machine, one run.
Usage: python benchmarks/e2e_cpu.py [--files 6] [--sentences 14]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import speechgen  # noqa: E402


def make_media(out: Path, files: int, sentences: int) -> list[dict]:
    exts = ["mp3", "flac", "mp4", "ogg", "m4a", "mkv"]
    rows = []
    pool = speechgen.SENTENCES
    for i in range(files):
        chosen = [pool[(i * 5 + j) % len(pool)] for j in range(sentences)]
        wav = out / f"f{i}.wav"
        truth = speechgen.long_form(wav, chosen, [0.5, 1.2, 2.5, 0.8, 4.0])
        path = speechgen.encode(wav, out / f"f{i}.{exts[i % len(exts)]}")
        wav.unlink()
        rows.append({"key": f"f{i}", "uri": str(path), "meta": {"text": " ".join(u.text for u in truth)}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--sentences", type=int, default=14)
    ap.add_argument("--config", default=None, help="pipeline config YAML")
    args = ap.parse_args()
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from asr_distill.media import decode_to_mono16k
    from asr_distill.models import embedded_whisper_base
    from beam_pipeline.pipeline import run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = make_media(tmp, args.files, args.sentences)
        index = tmp / "index.jsonl"
        index.write_text("".join(json.dumps(r) + "\n" for r in rows))
        audio_s = sum(len(decode_to_mono16k(r["uri"])) / 16000 for r in rows)
        truth = " ".join(r["meta"]["text"] for r in rows)

        t0 = time.perf_counter()
        record = run([f"--input_index={index}", f"--output={tmp / 'out'}"]
                     + ([f"--config={args.config}"] if args.config else []))
        ours_s = time.perf_counter() - t0
        texts = {}
        for p in (tmp / "out").glob("transcripts-*.jsonl"):
            for line in p.read_text().splitlines():
                rec = json.loads(line)
                texts[rec["key"]] = rec["text"]
        ours_wer = speechgen.word_error_rate(truth, " ".join(texts[r["key"]] for r in rows))

        t0 = time.perf_counter()
        model = WhisperModel(str(embedded_whisper_base()), device="cpu", compute_type="int8")
        pipe = BatchedInferencePipeline(model)
        load_s = time.perf_counter() - t0
        hyps = []
        for r in rows:
            segments, _ = pipe.transcribe(r["uri"], beam_size=5, batch_size=8)
            hyps.append(" ".join(s.text for s in segments))
        fw_s = time.perf_counter() - t0
        fw_wer = speechgen.word_error_rate(truth, " ".join(hyps))

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "audio_s": round(audio_s, 1), "files": len(rows),
        "ours": {"wall_s": round(ours_s, 2), "audio_s_per_s": round(audio_s / ours_s, 2), "wer": round(ours_wer, 4),
                 "segments": record["counts"]["segments"]},
        "faster_whisper_batched": {"wall_s": round(fw_s, 2), "model_load_s": round(load_s, 2),
                                   "audio_s_per_s": round(audio_s / fw_s, 2), "wer": round(fw_wer, 4)},
    }
    result["ratio_ours_over_fw"] = round(result["ours"]["audio_s_per_s"] / result["faster_whisper_batched"]["audio_s_per_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
