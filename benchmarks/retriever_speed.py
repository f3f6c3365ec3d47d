"""The term retriever's training step on short chunks, by how chunks share the audio tower (issue 30):
`pad30` (every chunk padded to 30 s, as Hugging Face's feature extractor and the seed's trainer do),
`padded` (the batch padded to its longest chunk) and `packed` (the trainer's default: chunks back to
back, attention kept inside each). Qwen2-Audio-7B's audio tower at its real dimensions (random
weights), LoRA r 16 on q/k/v/out as the trainer puts it, the trainer's heads, loss and AdamW, bf16
autocast; chunks of 1-5 s read by the trainer's DataLoader (memory-mapped shard, log-mel in workers,
pinned memory).

  python benchmarks/retriever_speed.py --out retriever.jsonl [--steps 12] [--ways pad30:32,padded:64,packed:64]
  python benchmarks/retriever_speed.py --out /tmp/check.jsonl --tiny   # the same code on CPU, a small tower

Each line: chunks/s, the step split into data (waiting for the loader), forward (towers + loss),
backward and optimizer, achieved TFLOP/s and MFU, peak memory. FLOPs are counted, not measured: per
encoder layer and position 2 x (4 W^2 + 2 W F) for the projections and MLP, 4 x S x W for attention
over S positions, the convolutions once (their input needs no gradient); a training step counts the
layers twice (forward, and a backward for input gradients only: the base is frozen; LoRA, heads and
loss ignored, under 1%) and attention three times (its backward does twice its forward's work).
`tflops` counts what the GPU ran (padding included, S the row or window it sat in); `useful_tflops`
counts each chunk's own positions only. MFU = tflops / the GPU's dense bf16 peak (H100/H200: 989).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr_distill.glossary import Glossary  # noqa: E402
from asr_distill.retrieval import data as rdata  # noqa: E402
from asr_distill.retrieval.config import LossConfig  # noqa: E402
from asr_distill.retrieval.loss import mined_terms, retriever_loss  # noqa: E402
from asr_distill.retrieval.model import BATCHING, PACK_POSITIONS, AudioTower, Retriever, add_lora, pack_rows  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}
QWEN2_AUDIO = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                   num_mel_bins=128, max_source_positions=1500)
WHISPER_BASE = dict(QWEN2_AUDIO, d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                    num_mel_bins=80)  # the tower issue 42's runs train (the same layers, Whisper base's sizes)


def shard(folder: Path, n: int, seed: int = 0, glossary: int = 1000) -> Path:
    """n chunks of 1-5 s (noise under a syllable-rate envelope: the content does not matter here) of the
    first 500 terms of a glossary of `glossary` made-up terms (one or two words of 3-12 letters)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    terms = [f"term{i} " + " ".join("".join(rng.choice(letters, rng.integers(3, 13))) for _ in range(rng.integers(1, 3)))
             for i in range(glossary)]
    rows, at = [], 0
    with open(folder / "speed.dat", "wb") as f:
        for i in range(n):
            samples = int(rng.uniform(1.0, 5.0) * 16000)
            t = np.arange(samples) / 16000
            wave = rng.normal(0, 0.1, samples) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
            data = (wave * 32767).clip(-32768, 32767).astype(np.int16).tobytes()
            f.write(data)
            term = terms[i % min(500, glossary)]
            rows.append({"key": f"c{i}", "uri": f"speed.dat#offset={at}&length={len(data)}", "term": term,
                         "text": f"about {term}"})
            at += len(data)
    (folder / "speed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "glossary.json").write_text(json.dumps(terms))
    return folder / "speed.jsonl"


def layer_flops(cfg, positions: float, attended: float) -> float:
    w, f = cfg.d_model, cfg.encoder_ffn_dim
    return cfg.encoder_layers * positions * (2 * (4 * w * w + 2 * w * f)), cfg.encoder_layers * positions * 4 * attended * w


def step_flops(cfg, way: str, frames: list[int]) -> tuple[float, float]:
    """(what ran, what was useful) for one training step on chunks of these mel frame counts."""
    own = [(n + 1) // 2 for n in frames]
    conv = lambda mel_frames: mel_frames * 2 * 3 * cfg.d_model * (cfg.num_mel_bins + cfg.d_model / 2)  # noqa: E731
    lin_u, att_u = map(sum, zip(*(layer_flops(cfg, p, p) for p in own)))
    useful = 2 * lin_u + 3 * att_u + conv(sum(frames))
    if way == "pad30":
        width = 2 * cfg.max_source_positions
        lin, att = layer_flops(cfg, len(frames) * width / 2, width / 2)
        return 2 * lin + 3 * att + conv(len(frames) * width), useful
    longest = max(own)
    if way == "varlen":  # each chunk's own positions, nothing else (the convolutions still see the batch padded)
        return useful + conv(len(frames) * 2 * longest) - conv(sum(frames)), useful
    if way == "padded":
        lin, att = layer_flops(cfg, len(frames) * longest, longest)
    else:
        rows = pack_rows(own, max(PACK_POSITIONS, longest))
        lin, att = layer_flops(cfg, rows.n_rows * rows.width, rows.width)
    return 2 * lin + 3 * att + conv(len(frames) * 2 * longest), useful


def measure(way: str, batch: int, steps: int, chunks, encoder_cfg, device, workers: int, terms: list[str],
            char_layers: int = 0, gradient: str = "all") -> dict:
    from transformers import Qwen2AudioEncoder

    torch.manual_seed(0)
    with torch.device(device):
        encoder = Qwen2AudioEncoder(encoder_cfg)  # float32 master weights: the trainer's (autocast to bf16)
    tower = AudioTower(encoder, way)
    add_lora(tower, 16, 32, 0.1, ("q_proj", "k_proj", "v_proj", "out_proj"))
    model = Retriever(tower, 384, 512).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")
    loss_cfg = LossConfig(glossary_gradient=gradient)
    gloss = torch.randn(len(terms), 384, device=device)
    model.set_glossary(terms, gloss, char_layers=char_layers)
    gloss_ids = torch.arange(len(terms), device=device)
    dataset = rdata.ChunkDataset(chunks.chunks, 5.0, tower.n_mels)
    batches = (b for epoch in range(1000) for b in rdata.loader(dataset, batch, workers, shuffle=True, seed=1 + epoch))
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda _device: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    flops = useful = 0.0
    done = 0
    warmup = 3
    t_all = None
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t_all = time.perf_counter()
            times = dict.fromkeys(times, 0.0)
        t0 = time.perf_counter()
        b = next(batches)
        mel, frames = b["mel"].to(device, non_blocking=True), b["frames"].to(device, non_blocking=True)
        idx = b["index"]
        term_ids = torch.tensor([chunks.chunks[j].term for j in idx.tolist()], device=device)
        sync(device)
        t1 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            mine = partial(mined_terms, loss_cfg, term_ids=term_ids, inside=term_ids[:, None]) \
                if gradient == "chosen" else None
            audio, embedded, texts, glossary, mined = model(mel, frames, term_ids, gloss[term_ids], gloss_ids, mine)
            loss = retriever_loss(loss_cfg, audio, embedded, term_ids, texts, term_ids, model.scale(), glossary,
                                  term_ids[:, None], mined)
        sync(device)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        sync(device)
        t3 = time.perf_counter()
        opt.step()
        sync(device)
        t4 = time.perf_counter()
        for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[k] += dt
        if i >= warmup:
            f, u = step_flops(encoder_cfg, way, b["frames"].tolist())
            flops, useful, done = flops + f, useful + u, done + len(idx)
    wall = time.perf_counter() - t_all
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    return {"step": "speed_path", "batching": way, "batch": batch, "steps": steps, "chunks_per_s": round(done / wall, 1),
            "step_s": round(wall / steps, 4), **{f"{k}_share": round(v / wall, 3) for k, v in times.items()},
            "tflops": round(flops / wall / 1e12, 1), "useful_tflops": round(useful / wall / 1e12, 1),
            "mfu": round(flops / wall / peak, 3) if peak else None,
            "useful_mfu": round(useful / wall / peak, 3) if peak else None,
            "peak_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 1) if cuda else None, "loss": round(loss.total.item(), 3),
            "gpu": name, "loader_workers": workers, "glossary": len(terms), "char_layers": char_layers,
            "glossary_gradient": gradient}


def same_embeddings(encoder_cfg, device, ways: list[str]) -> dict:
    """One batch of 1-5 s chunks embedded by each way under the step's precision, against `padded`
    (Hugging Face's layers): the largest difference of any embedding element, and the lowest cosine."""
    from transformers import Qwen2AudioEncoder

    torch.manual_seed(0)
    with torch.device(device):
        encoder = Qwen2AudioEncoder(encoder_cfg).eval()
    frames = torch.randint(100, 501, (48,))
    mel = torch.randn(len(frames), encoder_cfg.num_mel_bins, int(frames.max()), device=device)
    mel = mel * (torch.arange(mel.shape[2], device=device)[None, None, :] < frames.to(device)[:, None, None])
    out = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for way in sorted(set(ways) | {"padded"}):
            out[way] = AudioTower(encoder, way)(mel, frames).float()
    line = {"step": "same_embeddings", "against": "padded", "chunks": len(frames)}
    for way, got in out.items():
        if way != "padded":
            line[f"{way}_max_diff"] = round(float((got - out["padded"]).abs().max()), 5)
            line[f"{way}_min_cos"] = round(float(torch.nn.functional.cosine_similarity(got, out["padded"]).min()), 5)
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSONL: one line per way and batch, then a summary")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--ways", default="pad30:32,padded:64,packed:128,varlen:128,varlen:256")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer tower of width 64 on the CPU: checks the code")
    ap.add_argument("--whisper-base", action="store_true", help="Whisper base's sizes, not Qwen2-Audio's")
    ap.add_argument("--glossary", type=int, default=1000, help="made-up glossary terms (the chunks say 500 of them)")
    ap.add_argument("--char-layers", type=int, default=0, help="a characters' encoder of this depth on the term side")
    ap.add_argument("--glossary-gradient", default="all", help="loss.glossary_gradient, one or several: all,chosen")
    args = ap.parse_args(argv)
    from transformers import Qwen2AudioEncoderConfig

    device = torch.device("cpu" if args.tiny else "cuda")
    dims = dict(QWEN2_AUDIO, d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128) \
        if args.tiny else WHISPER_BASE if args.whisper_base else QWEN2_AUDIO
    encoder_cfg = Qwen2AudioEncoderConfig(**dims)
    with tempfile.TemporaryDirectory() as tmp:
        index = shard(Path(tmp), 256 if args.tiny else 4096, glossary=args.glossary)
        glossary = Glossary.load(str(Path(tmp) / "glossary.json"))
        chunks = rdata.ChunkSet(index, glossary)
        same = same_embeddings(encoder_cfg, device, [w.split(":")[0] for w in args.ways.split(",")])
        print(json.dumps(same), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(same) + "\n")
        lines = []
        for spec in args.ways.split(","):
            way, batch = spec.split(":")
            for gradient in args.glossary_gradient.split(","):
                line = measure(way, int(batch), args.steps, chunks, encoder_cfg, device, args.workers,
                               list(glossary.terms), args.char_layers, gradient)
                print(json.dumps(line), flush=True)
                with open(args.out, "a") as f:  # line by line: a run cut short keeps what it measured
                    f.write(json.dumps(line) + "\n")
                lines.append(line)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    best = {way: max((x for x in lines if x["batching"] == way), key=lambda x: x["chunks_per_s"], default=None)
            for way in BATCHING}
    short = max((best[w] for w in ("varlen", "packed") if best[w]), key=lambda x: x["chunks_per_s"], default=None)
    if best["pad30"] and short:
        summary = {"step": "speed", "pad30_chunks_per_s": best["pad30"]["chunks_per_s"],
                   "short_chunks_per_s": short["chunks_per_s"], "short_batching": short["batching"],
                   "short_batch": short["batch"],
                   "speedup": round(short["chunks_per_s"] / best["pad30"]["chunks_per_s"], 2),
                   "mfu": short["mfu"], "pad30_mfu": best["pad30"]["mfu"], "gpu": short["gpu"]}
        print(json.dumps(summary))
        with open(args.out, "a") as f:
            f.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
