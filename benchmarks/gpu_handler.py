"""The vllm handler on a GPU: correctness through a real Beam pipeline, and throughput side by side.

On an H100/H200 with vLLM 0.26 and Beam installed (see benchmarks/README.md for carrying them over):

  python benchmarks/gpu_handler.py handler-vs-raw MODEL_DIR   # (b) our handler through Beam, then (a) raw
  python benchmarks/gpu_handler.py pack MODEL_DIR             # (d) unpacked / merged / packed, handler
  python benchmarks/gpu_handler.py hf MODEL_DIR               # (c) HF transformers generate, batch 32

MODEL_DIR: a Qwen2-Audio-7B directory; with `--dummy` (the default) weights are random
(`load_format="dummy"`) and outputs are forced to a fixed length (`ignore_eos`), so throughput is real
and text is noise. Every mode appends JSON lines to $OUT/gpu_bench.jsonl (or ./gpu_bench.jsonl).
`--fake` swaps the engine for the CPU test double to check this script itself without a GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from asr_distill.asr import vllm_backend  # noqa: E402
from asr_distill.asr.families import family_for  # noqa: E402
from asr_distill.config import InferenceConfig, SegmentingConfig, VllmEngineConfig  # noqa: E402
from asr_distill.records import DecodedAudio, IndexRow, Region, Segment  # noqa: E402
from asr_distill.segmenting import cut_segments, plan_segments  # noqa: E402
from transforms.inference import Transcribe  # noqa: E402

from benchmarks import segment_registry  # noqa: E402

OUT = Path(os.environ.get("OUT", "."))
# Repeated or similar audio must not be served from vLLM's caches on either side (measured: copies of
# the same clip ran 3x faster than the hardware allows with them on).
CACHES_OFF = {"enable_prefix_caching": False, "mm_processor_cache_gb": 0}


def log(record: dict) -> None:
    print(json.dumps(record), flush=True)
    with open(OUT / "gpu_bench.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def make_segments(n: int, seed: int = 0) -> list[Segment]:
    """The raw-vLLM reference workload: n segments of 8-30 s (uniform), noise at 0.05."""
    rng = np.random.default_rng(seed)
    durs = rng.uniform(8, 30, size=n)
    return [Segment(f"file{i // 8:03d}", i % 8, 0.0, float(d),
                    (0.05 * rng.standard_normal(int(d * 16000))).astype(np.float32)) for i, d in enumerate(durs)]


def inference_cfg(model_dir: str, args, **over) -> InferenceConfig:
    base = dict(backend="vllm", model=model_dir, temperature=0.0, max_new_tokens=96, ignore_eos=True,
                batch_size=args.batch_size, share_across_processes=False, seed=0,
                vllm=VllmEngineConfig(max_model_len=4096, gpu_memory_utilization=0.9,
                                      max_num_seqs=args.max_num_seqs,
                                      load_format="dummy" if args.dummy else "auto",
                                      engine_kwargs=CACHES_OFF))
    base.update(over)
    return InferenceConfig(**base)


def run_handler(cfg: InferenceConfig, segments: list[Segment], workers: int) -> float:
    """Segments through Reshuffle -> RunInference(handler) on DirectRunner with `workers` threads.

    Checks afterwards (outside the timing) that every segment came back exactly once with its key.
    """
    segment_registry.SEGMENTS[:] = segments
    segment_registry.RETURNED.clear()
    opts = PipelineOptions([], direct_num_workers=workers, direct_running_mode="multi_threading")
    p = beam.Pipeline(options=opts)
    out = (p | beam.Create(list(range(len(segments))))
           | "Spread" >> beam.Reshuffle()
           | "Lookup" >> beam.Map(segment_registry.lookup)
           | Transcribe(cfg))
    _ = out.texts | "Record" >> beam.Map(segment_registry.record)
    _ = out.failures | "RecordFailures" >> beam.Map(segment_registry.record_failure)
    t0 = time.perf_counter()
    p.run().wait_until_finish()
    dt = time.perf_counter() - t0
    got = segment_registry.RETURNED
    assert sorted(got, key=str) == sorted(s.segment_id for s in segments), (
        f"{len(got)} results for {len(segments)} segments; failures: {[g for g in got if isinstance(g, tuple)][:3]}")
    return dt


def handler_vs_raw(model_dir: str, args) -> None:
    """(b) then (a) on the same segments and sampling: n segments (default 1024) and the 256 of the
    reference workload. The larger set is the headline: Beam's fixed start-up (about 1 s here) is
    amortised as in a real job."""
    sets = {n: make_segments(n) for n in sorted({args.n, 256})}
    cfg = inference_cfg(model_dir, args)
    t0 = time.perf_counter()
    backend = vllm_backend.shared_backend(cfg)  # the engine RunInference will find in this process
    log({"step": "engine_start", "s": round(time.perf_counter() - t0, 1), "engine": "LLMEngine"})
    run_handler(cfg, sets[256][:32], args.workers)  # warm-up: Beam start, first requests
    handler = {}
    for n, segments in sets.items():
        audio_s = sum(s.duration_s for s in segments)
        dt = run_handler(cfg, segments, args.workers)
        handler[n] = audio_s / dt
        rec = {"step": "handler", "segments": n, "audio_s": round(audio_s, 1), "wall_s": round(dt, 2),
               "audio_s_per_s": round(audio_s / dt, 1), "batch_size": cfg.batch_size, "workers": args.workers}
        if args.fake:
            rec["fake_max_running"] = backend.engines.engine.max_running
        log(rec)
    if args.fake:
        return
    from vllm import LLM, SamplingParams

    requests = {n: ([backend.request(s) for s in segs], [SamplingParams(**backend.sampling_kwargs(s)) for s in segs])
                for n, segs in sets.items()}
    for engines in list(vllm_backend._ENGINES.values()):
        engines.close()
    vllm_backend._ENGINES.clear()
    del backend
    gc.collect()
    t0 = time.perf_counter()
    llm = LLM(**vllm_backend.engine_args(cfg, family_for(cfg.model, cfg.model_family)))
    log({"step": "engine_start", "s": round(time.perf_counter() - t0, 1), "engine": "LLM"})
    llm.generate(requests[256][0][:8], requests[256][1][:8], use_tqdm=False)
    runs = [(f"raw_same_sampling_{n}", n, requests[n][1]) for n in sets]
    runs.append(("raw_no_logprobs_256", 256, SamplingParams(temperature=0.0, max_tokens=96, ignore_eos=True)))
    for name, n, params in runs:
        audio_s = sum(s.duration_s for s in sets[n])
        t = time.perf_counter()
        outs = llm.generate(requests[n][0], params, use_tqdm=False)
        dt = time.perf_counter() - t
        assert len(outs) == n and all(len(o.outputs[0].token_ids) == 96 for o in outs)
        log({"step": name, "segments": n, "audio_s": round(audio_s, 1), "wall_s": round(dt, 2),
             "audio_s_per_s": round(audio_s / dt, 1)})
        if name.startswith("raw_same_sampling"):
            log({"step": "ratio", "segments": n, "handler_over_raw": round(handler[n] / (audio_s / dt), 3)})


def sweep(model_dir: str, args) -> None:
    """Where the handler's time goes: the backend alone (all segments from one thread, no Beam), then
    the handler through Beam at several batch sizes x feeding threads. One engine throughout."""
    segments = make_segments(args.n)
    audio_s = sum(s.duration_s for s in segments)
    cfg = inference_cfg(model_dir, args)
    t0 = time.perf_counter()
    backend = vllm_backend.shared_backend(cfg)
    log({"step": "engine_start", "s": round(time.perf_counter() - t0, 1), "engine": "LLMEngine"})
    backend.transcribe_segments(segments[:32])
    t = time.perf_counter()
    out = backend.transcribe_segments(segments)
    dt = time.perf_counter() - t
    assert len(out) == len(segments) and (args.fake or all(o.signals["num_tokens"] == 96 for o in out))
    log({"step": "backend_direct", "segments": len(segments), "wall_s": round(dt, 2),
         "audio_s_per_s": round(audio_s / dt, 1)})
    for bs, workers in [(32, 16), (64, 16), (128, 8), (256, 4)]:
        c = inference_cfg(model_dir, args, batch_size=bs)
        if (bs, workers) == (32, 16):
            run_handler(c, segments[:64], workers)
        dt = run_handler(c, segments, workers)
        log({"step": "handler", "segments": len(segments), "batch_size": bs, "workers": workers,
             "wall_s": round(dt, 2), "audio_s_per_s": round(audio_s / dt, 1)})


def conversation_files(n_files: int, seed: int = 1) -> list[tuple[DecodedAudio, list[Region]]]:
    """Files of 2-6 s speech bursts with 1-8 s pauses (~3000 s of speech over 40 files)."""
    rng = np.random.default_rng(seed)
    files = []
    for f in range(n_files):
        regions, t = [], 0.5
        while sum(r.duration_s for r in regions) < 75:
            d = float(rng.uniform(2, 6))
            regions.append(Region(round(t, 3), round(t + d, 3)))
            t += d + float(rng.uniform(1, 8))
        wave = (0.002 * rng.standard_normal(int((t + 0.5) * 16000))).astype(np.float32)
        for r in regions:
            a, b = int(r.start_s * 16000), int(r.end_s * 16000)
            wave[a:b] = (0.05 * rng.standard_normal(b - a)).astype(np.float32)
        files.append((DecodedAudio(IndexRow(f"conv{f:03d}", f"conv{f:03d}.wav"), wave), regions))
    return files


def pack(model_dir: str, args) -> None:
    files = conversation_files(40)
    speech_s = sum(r.duration_s for _, regions in files for r in regions)
    cfg = inference_cfg(model_dir, args, max_new_tokens=512, max_new_tokens_per_s=3.5)
    t0 = time.perf_counter()
    vllm_backend.shared_backend(cfg)
    log({"step": "engine_start", "s": round(time.perf_counter() - t0, 1), "engine": "LLMEngine"})
    plans = {"regions_as_is": SegmentingConfig(max_merge_gap_s=0.0),
             "merged_gap_5s": SegmentingConfig(),
             "packed": SegmentingConfig(pack=True)}
    results = {}
    for name, seg_cfg in plans.items():
        segments = [s for audio, regions in files for s in cut_segments(audio, plan_segments(regions, audio.wave, seg_cfg))]
        if name == "regions_as_is":
            run_handler(cfg, segments[:32], args.workers)  # warm-up
        dt = run_handler(cfg, segments, args.workers)
        sent = sum(len(s.audio) for s in segments) / 16000
        results[name] = speech_s / dt
        log({"step": f"pack_{name}", "segments": len(segments), "speech_s": round(speech_s, 1),
             "audio_sent_s": round(sent, 1), "wall_s": round(dt, 2), "speech_s_per_s": round(speech_s / dt, 1)})
    log({"step": "ratio", "packed_over_regions": round(results["packed"] / results["regions_as_is"], 3),
         "packed_over_merged": round(results["packed"] / results["merged_gap_5s"], 3)})


def hf(model_dir: str, args) -> None:
    import torch
    from transformers import AutoConfig, AutoProcessor, Qwen2AudioForConditionalGeneration

    segments = make_segments(args.n)
    audio_s = sum(s.duration_s for s in segments)
    cfg = inference_cfg(model_dir, args)
    fam = family_for(cfg.model, None)
    prompt = fam.prompt(fam.instruction(None, None))
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "left"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen2AudioForConditionalGeneration(AutoConfig.from_pretrained(model_dir)).eval()

    def generate(batch):
        x = proc(text=[prompt] * len(batch), audio=[s.audio for s in batch], sampling_rate=16000,
                 return_tensors="pt", padding=True).to("cuda")
        x["input_features"] = x["input_features"].to(torch.bfloat16)
        with torch.inference_mode():
            return model.generate(**x, max_new_tokens=96, min_new_tokens=96, do_sample=False)

    generate(segments[:2])
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(segments), 32):
        generate(segments[i:i + 32])
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    log({"step": "hf_generate_bs32", "segments": len(segments), "audio_s": round(audio_s, 1),
         "wall_s": round(dt, 2), "audio_s_per_s": round(audio_s / dt, 1)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", help="handler-vs-raw | sweep | pack | hf, or several joined by '+'")
    ap.add_argument("model_dir")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=8,
                    help="DirectRunner threads feeding the engine (x batch size > max_num_seqs keeps it full)")
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--real-weights", dest="dummy", action="store_false")
    ap.add_argument("--fake", action="store_true", help="CPU dry run against tests/fake_vllm.py")
    args = ap.parse_args()
    if args.fake:
        os.environ["ASR_DISTILL_VLLM_ENGINE"] = "fake_vllm"
    for mode in args.mode.split("+"):
        {"handler-vs-raw": handler_vs_raw, "sweep": sweep, "pack": pack, "hf": hf}[mode](args.model_dir, args)


if __name__ == "__main__":
    main()
