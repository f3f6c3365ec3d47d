"""What a run cost, measured by the run itself, and what a full job will cost, predicted before it runs.

CPU: every process that works for the run reports its own CPU seconds (user + system, all threads),
each second once: SDK workers through a Beam counter (`cost/cpu_ms`, from their bundles' ends), the
launcher at the end of the run, local engine servers in their stats file (with their engine's
processes). GPU: the seconds each local engine server held its GPUs, from its start to its exit; the
share of them between its first request and its last result (busy: requests wait while the engine
starts); and its working time, from the later of its first request and its readiness to its last
result. Per 1000 hours of audio, and in money with `cost.gpu_hour` / `cost.cpu_core_hour`.

A sizing run (`--stop_after=segment`) knows how much segment audio the job will send to the model;
with a throughput of a working GPU and an engine's start and end (`cost.segment_audio_s_per_gpu_s`,
`cost.engine_start_s`, `cost.engine_end_s`, or the `cost` of an earlier run.json named by
`cost.throughput_from`: its `segment_audio_s_per_working_gpu_s`, `engine_start_s` and `engine_end_s`) it
predicts the GPU-hours and money of the full job: one engine start, the segment audio at that
throughput, one end. The working throughput, not the busy one: on an H200 the busy throughput of 150,
300 and 600 files was 140, 222 and 330 segment-audio-s/s (the engine's start counted in it: requests
queue from the first decoded file), the working one 477, 505 and 517 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

_lock = threading.Lock()
_reported = {"pid": None, "cpu_s": 0.0}


def take_cpu_s() -> float:
    """This process's CPU seconds not reported before (by this call, in this process): each CPU second
    of a process is handed out once, whichever of its stages asks."""
    with _lock:
        now = time.process_time()
        if _reported["pid"] != os.getpid():  # a forked child starts its own count
            _reported.update(pid=os.getpid(), cpu_s=0.0)
        delta, _reported["cpu_s"] = max(0.0, now - _reported["cpu_s"]), now
        return delta


def engine_usage(stats: Optional[dict], gpus: int) -> dict:
    """One engine server's share of the cost, from its stats file (asr_distill/asr/engine_server.py):
    held from its start to its exit, busy from its first request to its last result."""
    if not stats:
        return {"cpu_s": 0.0, "held_s": 0.0, "busy_s": 0.0, "work_s": 0.0, "start_s": 0.0, "end_s": 0.0,
                "gpus": gpus}
    end = stats.get("exit_at") or stats.get("died_at") or stats.get("last_result_at") or stats["spawned_at"]
    first, last, ready = stats.get("first_request_at"), stats.get("last_result_at"), stats.get("ready_at")
    return {"cpu_s": stats.get("cpu_s") or 0.0, "held_s": max(0.0, end - stats["spawned_at"]),
            "busy_s": max(0.0, last - first) if first and last else 0.0,
            "work_s": max(0.0, last - max(first, ready or first)) if first and last else 0.0,
            "start_s": max(0.0, ready - stats["spawned_at"]) if ready else 0.0,
            "end_s": max(0.0, end - last) if last else 0.0, "gpus": gpus}


def _money(hours: float, price: Optional[float]) -> Optional[float]:
    return None if price is None else round(hours * price, 4)


def cost_section(*, worker_cpu_s: float, launcher_cpu_s: float, engines: list[dict], audio_s: float,
                 segment_audio_s: float, wall_s: float, gpu_hour: Optional[float] = None,
                 cpu_core_hour: Optional[float] = None) -> dict:
    """run.json's `cost`. `engines`: per local engine server, {"cpu_s", "held_s", "busy_s", "gpus"}."""
    engine_cpu_s = sum(e.get("cpu_s") or 0.0 for e in engines)
    cpu_s = worker_cpu_s + launcher_cpu_s + engine_cpu_s
    gpu_s = sum((e.get("held_s") or 0.0) * e.get("gpus", 1) for e in engines)
    busy_s = sum((e.get("busy_s") or 0.0) * e.get("gpus", 1) for e in engines)
    work_s = sum((e.get("work_s") or 0.0) * e.get("gpus", 1) for e in engines)
    per = 1000 * 3600 / audio_s if audio_s else None
    out = {
        "cpu_core_s": round(cpu_s, 1),
        "cpu_core_s_by_process": {"workers": round(worker_cpu_s, 1), "launcher": round(launcher_cpu_s, 1),
                                  "engine_servers": round(engine_cpu_s, 1)},
        "mean_busy_cores": round(cpu_s / wall_s, 2) if wall_s else None,
        "engine_servers": len(engines),
        "gpu_s": round(gpu_s, 1),
        "gpu_busy_share": round(busy_s / gpu_s, 3) if gpu_s else None,
        "segment_audio_s_per_gpu_s": round(segment_audio_s / gpu_s, 2) if gpu_s else None,
        "segment_audio_s_per_busy_gpu_s": round(segment_audio_s / busy_s, 2) if busy_s else None,
        # what a forecast needs: the engine's start and end, and the throughput while it worked
        "engine_start_s": round(max((e.get("start_s") or 0.0 for e in engines), default=0.0), 1),
        "engine_end_s": round(max((e.get("end_s") or 0.0 for e in engines), default=0.0), 1),
        "segment_audio_s_per_working_gpu_s": round(segment_audio_s / work_s, 2) if work_s else None,
        "per_1000_audio_h": None,
        "prices": {"gpu_hour": gpu_hour, "cpu_core_hour": cpu_core_hour},
    }
    if per is not None:
        gpu_h, cpu_h = gpu_s * per / 3600, cpu_s * per / 3600
        money = [m for m in (_money(gpu_h, gpu_hour), _money(cpu_h, cpu_core_hour)) if m is not None]
        out["per_1000_audio_h"] = {"gpu_h": round(gpu_h, 3), "cpu_core_h": round(cpu_h, 3),
                                   "money": round(sum(money), 2) if money else None}
    return out


def predict(*, segment_audio_s: float, audio_s: float, segment_audio_s_per_gpu_s: float,
            engine_start_s: float = 0.0, engine_end_s: float = 0.0, gpu_hour: Optional[float] = None) -> dict:
    """A sizing run's forecast of the full job's GPU time (and money): one engine start, the segment
    audio at a measured throughput of a working GPU, one end."""
    gpu_h = (engine_start_s + segment_audio_s / segment_audio_s_per_gpu_s + engine_end_s) / 3600
    return {"segment_audio_s": round(segment_audio_s, 1), "segment_audio_s_per_gpu_s": segment_audio_s_per_gpu_s,
            "engine_start_s": engine_start_s, "engine_end_s": engine_end_s,
            "gpu_h": round(gpu_h, 4), "money": _money(gpu_h, gpu_hour),
            "gpu_h_per_1000_audio_h": round(gpu_h * 1000 * 3600 / audio_s, 3) if audio_s else None}


def format_cost(cost: dict) -> str:
    """The summary line's words."""
    per = cost.get("per_1000_audio_h") or {}
    words = f"cost: {cost['cpu_core_s']:.0f} CPU-core-s"
    if cost.get("gpu_s"):
        words += f", {cost['gpu_s']:.0f} GPU-s (busy {cost['gpu_busy_share']:.0%})"
    if per:
        words += f"; per 1000 audio-h: {per['gpu_h']:.2f} GPU-h, {per['cpu_core_h']:.1f} CPU-core-h"
        if per.get("money") is not None:
            words += f", {per['money']:.2f} in money"
    pred = cost.get("prediction")
    if pred:
        words += (f"; forecast for the full job at {pred['segment_audio_s_per_gpu_s']:g} segment-audio-s per GPU-s: "
                  f"{pred['gpu_h']:.3f} GPU-h" + (f", {pred['money']:.2f} in money" if pred["money"] is not None else ""))
    return words
