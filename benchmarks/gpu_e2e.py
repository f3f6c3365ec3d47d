"""The README's vLLM command end to end on one GPU machine, against raw vLLM on the same segments.

  python benchmarks/gpu_e2e.py e2e --index I --model DIR [--label L] [--scale N] [-- extra CLI flags]
  python benchmarks/gpu_e2e.py raw --index I --model DIR
  python benchmarks/gpu_e2e.py fault --index I --model DIR --target core|server [--kill-at 80] [--label L]
  python benchmarks/gpu_e2e.py report
  python benchmarks/gpu_e2e.py e2e|fault ... --runner flink|spark [--slots N]   (a cluster on this machine)
  python benchmarks/gpu_e2e.py compare --labels A B                              (two runs' texts)

`e2e` runs `python -m beam_pipeline --input_index=I --output=O --config=C` as a user would, where C
is launch/config/teacher.yaml with the model set and four benchmark-only changes: random weights
(`load_format: dummy`), a fixed output length (`ignore_eos`, `max_new_tokens: 96`) and vLLM's prefix
and multimodal caches off (on repeated audio they made vLLM faster than the hardware allows). It
records the wall time from the command's start to its exit, the split (engine started / ready, first
request, last result: from the engine server's stats), the GPU's busy share (NVML), the runner's peak
RSS (the command and its SDK worker processes, not the engine server) and run.json's accounting.

`raw` cuts the same segments with the pipeline's own functions (decode, Silero, segmenting, on every
core) and times `import vllm`, `vllm.LLM(...)` and one `LLM.generate` over all of them with the same
engine arguments and per-segment sampling: engine start (vLLM's import included) counted on both
sides. (Until 2026-12-01 the import was left out of the raw side: see RESULTS.md.) `report` prints e2e/raw.

`fault` is `e2e` with a SIGKILL `--kill-at` seconds into the run: to vLLM's engine core (`core`: the
process that holds the GPU, from `nvidia-smi --query-compute-apps=pid`, under the engine server) or
to the engine server itself (`server`). It adds a line to $OUT/faults.jsonl: when the kill was
seen (`core`: the old server has exited, its requests answered as died; `server`: a new server was
spawned), when the new engine was ready, the run's wall time against the newest undisturbed `e2e`
line (`--undisturbed`), and run.json's segment accounting.

`--fake` swaps vLLM for the engine double (tests/fake_vllm.py): for checking this script, and for
the runner's memory at several corpus sizes on a machine without a GPU. Results are JSON lines in
$OUT/gpu_e2e.jsonl (or ./gpu_e2e.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
from asr_distill.processes import alive, children_by_parent, process_group, rss, subtree  # noqa: E402

OUT = Path(os.environ.get("OUT", "."))
TEACHER = ROOT / "launch" / "config" / "teacher.yaml"
BENCH_ONLY = {"ignore_eos": True, "max_new_tokens": 96}
CACHES_OFF = {"enable_prefix_caching": False, "mm_processor_cache_gb": 0}


def _logs(name: str = "gpu_e2e.jsonl") -> list[Path]:
    """$OUT/NAME, and a copy in the work folder that outlives one device call's $OUT."""
    work = Path(os.environ.get("BENCH_WORK", "/tmp/gpu_e2e"))
    work.mkdir(parents=True, exist_ok=True)
    return list(dict.fromkeys([OUT / name, work / name]))


def _read_log() -> list[dict]:
    path = _logs()[-1]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def log(record: dict, name: str = "gpu_e2e.jsonl") -> None:
    print(json.dumps(record), flush=True)
    for path in _logs(name):
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def bench_config(model: str, path: Path, teacher: Path = TEACHER, real: bool = False) -> Path:
    """The teacher config with the model set; unless `real`, random weights and a fixed output length.
    vLLM's caches are off either way."""
    cfg = yaml.safe_load(Path(teacher).read_text())
    inference = cfg["inference"]
    inference["model"] = model
    vllm = inference.setdefault("vllm", {})
    vllm["engine_kwargs"] = {**vllm.get("engine_kwargs", {}), **CACHES_OFF}
    if not real:
        inference.update(BENCH_ONLY)
        vllm["load_format"] = "dummy"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def scaled_index(index: Path, scale: int, out: Path) -> Path:
    """The index `scale` times over, each copy with its own keys (the same files)."""
    base = Path(index).resolve().parent
    rows = [json.loads(line) for line in Path(index).read_text().splitlines() if line.strip()]
    with open(out, "w") as f:
        for copy in range(scale):
            for row in rows:
                f.write(json.dumps({**row, "key": f"{row['key']}#{copy}", "uri": str(base / row["uri"])}) + "\n")
    return out


# ------------------------------------------------------------------------------- sampling a process tree


class Sampler(threading.Thread):
    """Every half second: the RSS of a process tree without the engine servers, and GPU utilisation."""

    def __init__(self, root: int, engine_dir: Path):
        super().__init__(daemon=True)
        self.root, self.engine_dir = root, engine_dir
        self.peak_runner = self.peak_engine = self.peak_launcher = self.peak_worker = 0
        self.util: list[int] = []
        self.stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._gpu = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no GPU, no NVML: no utilisation figures
            self._nvml = None

    def _engine_pids(self) -> set:
        pids = set()
        for p in self.engine_dir.glob("*.pid"):
            try:
                pids.add(int(p.read_text()))
            except (OSError, ValueError):
                pass
        return pids

    def run(self) -> None:
        while not self.stop.is_set():
            tree, engines = children_by_parent(), self._engine_pids()
            sizes = [rss(p) for p in subtree(self.root, tree, engines)]
            engine = sum(rss(p) for e in engines for p in subtree(e, tree))
            self.peak_runner, self.peak_engine = max(self.peak_runner, sum(sizes)), max(self.peak_engine, engine)
            self.peak_launcher = max(self.peak_launcher, rss(self.root))
            self.peak_worker = max([self.peak_worker, *sizes[1:]])
            if self._nvml:
                self.util.append(self._nvml.nvmlDeviceGetUtilizationRates(self._gpu).gpu)
            self.stop.wait(0.5)


# ------------------------------------------------------------------------------------------- clusters
# --runner flink|spark: the README command against a real cluster on this machine (launch/local_cluster.py:
# what `make flink-up` starts, sized by --slots), its worker pool forking the SDK workers (EXTERNAL).


def _local_cluster():
    sys.path.insert(0, str(ROOT / "launch"))
    import local_cluster

    return local_cluster


def runner_flags(args) -> list[str]:
    if args.runner == "direct":
        return []
    lc = _local_cluster()
    if args.runner == "flink":
        flags = ["--runner=FlinkRunner", f"--flink_master=localhost:{lc.FLINK_REST}"]
    else:
        flags = ["--runner=SparkRunner", f"--spark_master_url=spark://localhost:{lc.SPARK_MASTER}"]
    return [*flags, f"--job_endpoint=localhost:{lc.JOB_SERVERS[args.runner]}", "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{lc.WORKER_POOLS[args.runner]}",
            f"--sdk_worker_parallelism={args.sdk_workers or args.slots}"]


def cluster_up(args) -> Path:
    """The runner's cluster, started unless it runs; the engine dir its worker pool's SDK workers use."""
    lc = _local_cluster()
    engines = Path(args.work) / f"{args.runner}-engines"
    os.environ["ASR_DISTILL_ENGINE_DIR"] = str(engines)  # the worker pool, so its SDK workers, inherit it
    if any(alive(p) for p in lc._pids(args.runner).values()):
        return engines
    vllm = yaml.safe_load(Path(args.teacher).read_text())["inference"].get("vllm", {})
    pool = (f"--front_end_nice={vllm.get('front_end_nice', 10)}", f"--engine_cpus={vllm.get('engine_cpus', 0)}")
    t = time.time()
    if args.runner == "flink":
        lc.flink_up(slots=args.slots, taskmanager_memory=args.taskmanager_memory, pool_args=pool)
    else:
        lc.spark_up(cores=args.slots, pool_args=pool)
    log({"step": "cluster_up", "runner": args.runner, "slots": args.slots, "up_s": round(time.time() - t, 1),
         "java": lc.java_binary(), "worker_pool": list(pool)})
    return engines


def worker_pool_pid(args) -> int:
    return _local_cluster()._pids(args.runner)["worker_pool"]


def clear_engine_dir(engines: Path) -> None:
    """Before a cluster run: the stats of earlier runs' engine servers (gone by now) out of the way."""
    for p in engines.glob("*.stats.json"):
        p.unlink()


def stop_cluster_engines(config: Path, engines: Path) -> None:
    """A cluster's engine server outlives the job by `vllm.idle_exit_s` (the next job on the node would
    use it): stop it, so the next run starts its own engine on a free GPU, as raw vLLM does."""
    from asr_distill.asr.engine_server import engine_specs, stop_engines
    from asr_distill.config import load_config

    os.environ["ASR_DISTILL_ENGINE_DIR"] = str(engines)
    stop_engines(engine_specs(load_config(config).inference))


def cluster_timeline(args, t0: float) -> dict:
    """The runner's own view of the newest job: when it started and ended, seconds after the command's start."""
    lc = _local_cluster()
    if args.runner == "flink":
        jobs = (lc._http_json(f"http://localhost:{lc.FLINK_REST}/jobs/overview") or {}).get("jobs", [])
        if not jobs:
            return {}
        job = max(jobs, key=lambda j: j["start-time"])
        detail = lc._http_json(f"http://localhost:{lc.FLINK_REST}/jobs/{job['jid']}") or {}
        first_task = min((v["start-time"] for v in detail.get("vertices", []) if v.get("start-time", -1) > 0),
                         default=None)
        return {"job_state": job["state"], "job_start_s": round(job["start-time"] / 1000 - t0, 1),
                "first_task_s": round(first_task / 1000 - t0, 1) if first_task else None,
                "job_end_s": round(job["end-time"] / 1000 - t0, 1) if job.get("end-time", -1) > 0 else None,
                "vertices": len(detail.get("vertices", [])), "sdk_workers_forked": _forks_since(args, t0)}
    apps = (lc._http_json(f"http://localhost:{lc.SPARK_UI}/json/") or {}).get("completedapps", [])
    if not apps:
        return {}
    app = max(apps, key=lambda a: a["starttime"])
    return {"job_state": app["state"], "job_start_s": round(app["starttime"] / 1000 - t0, 1),
            "job_end_s": round((app["starttime"] + app["duration"]) / 1000 - t0, 1),
            "sdk_workers_forked": _forks_since(args, t0)}


def _forks_since(args, t0: float) -> int:
    """SDK workers the worker pool forked since t0 (its log: one line a fork)."""
    from datetime import datetime

    log_file = _local_cluster()._state(args.runner) / "log" / "worker_pool.out"
    n = 0
    for line in log_file.read_text(errors="replace").splitlines():
        if ": pid " in line and "SDK worker" in line:
            try:
                when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            n += when >= t0
    return n


# ----------------------------------------------------------------------------------------------- e2e


def e2e(args, extra: list[str], during=None) -> dict:
    """The README command; `during(t0, engines dir)` runs in a thread beside it (a fault to inject)."""
    work = Path(args.work) / args.label
    work.mkdir(parents=True, exist_ok=True)
    index = scaled_index(Path(args.index), args.scale, work / "index.jsonl")
    config = bench_config(args.model, work / "teacher.yaml", args.teacher, args.real)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)  # a label run again starts afresh
    if args.runner == "direct":
        engines = work / "engines"
        shutil.rmtree(engines, ignore_errors=True)
    else:
        engines = cluster_up(args)
        stop_cluster_engines(config, engines)  # one left by an earlier job would serve this one, warm
        clear_engine_dir(engines)
    rec = run_cli(args, index, config, out, engines, [*runner_flags(args), *extra], during)
    if rec["rc"] != 0 and args.resume_after_failure:  # a fault that failed the job loudly: --resume finishes it
        again = run_cli(args, index, config, out, engines, [*runner_flags(args), *extra, "--resume"])
        rec["first_rc"], rec["first_wall_s"] = rec["rc"], rec["wall_s"]
        rec.update(resume_rc=again["rc"], resume_wall_s=again["wall_s"],
                   **{k: v for k, v in again.items() if k not in ("wall_s", "rc", "command")})
        rec["rc"] = again["rc"]
    rec.update(outputs_check(index, out))
    if args.runner != "direct":
        rec["cluster"] = cluster_timeline(args, rec["t0"])
        stop_cluster_engines(config, engines)  # idle, it would hold the GPU for idle_exit_s after the job
    if rec["rc"] == 0 and args.keep:
        records = [line for p in sorted(out.glob("transcripts-*.jsonl")) for line in p.read_text().splitlines()]
        (OUT / f"{args.label}-transcripts.jsonl").write_text("\n".join(records[:args.keep]) + "\n")
    rec.pop("t0")
    log(rec)
    return rec


def run_cli(args, index: Path, config: Path, out: Path, engines: Path, extra: list[str], during=None) -> dict:
    """One `python -m beam_pipeline` run, timed and sampled; its run.json and engine stats read back."""
    env = dict(os.environ, ASR_DISTILL_ENGINE_DIR=str(engines))
    cmd = [sys.executable, "-m", "beam_pipeline", f"--input_index={index}", f"--output={out}",
           f"--config={config}", *extra]
    t0 = time.time()
    with open(out.parent / "cli.log", "a") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        # on a cluster the SDK workers are the worker pool's children: sample the pool's tree
        sampler = Sampler(proc.pid if args.runner == "direct" else worker_pool_pid(args), engines)
        sampler.start()
        if during:
            threading.Thread(target=during, args=(t0, engines), daemon=True).start()
        rc = proc.wait()
    wall = time.time() - t0
    sampler.stop.set()
    sampler.join()
    rec = {"step": "e2e", "label": args.label, "raw": args.raw_label, "scale": args.scale, "rc": rc, "wall_s": round(wall, 1),
           "t0": t0,
           "command": " ".join(["python -m beam_pipeline", f"--input_index={index.name}", "--output=OUT",
                                "--config=teacher.yaml", *extra]),
           "peak_rss_runner_mb": round(sampler.peak_runner / 2**20), "peak_rss_engine_mb": round(sampler.peak_engine / 2**20),
           "peak_rss_launcher_mb": round(sampler.peak_launcher / 2**20),
           "peak_rss_one_worker_mb": round(sampler.peak_worker / 2**20),
           "gpu_busy_share": round(sum(sampler.util) / (100 * len(sampler.util)), 3) if sampler.util else None}
    if rc == 0:
        run = json.loads((out / "run.json").read_text())
        seg = run["segment_accounting"]
        rec.update(runner=run["runner"], rows=run["counts"]["index_rows"], transcripts=run["counts"]["transcripts"],
                   segments=seg["cut"], segments_transcribed=seg["transcribed"], segments_failed=seg["failed"],
                   segments_reused=seg.get("reused"),
                   segments_lost=seg["lost"], segment_audio_s=run["segment_audio_s"], audio_s=run["audio_s"],
                   speech_s=run["speech_s"], reconciled=run["reconciled"],
                   segments_reconciled=run["segments_reconciled"], environment=run["environment"],
                   segment_audio_s_per_s=round(run["segment_audio_s"] / wall, 1),
                   engine_restarts=seg.get("engine_restarts"))
        if run.get("cost"):  # what the run measured of itself (issue 28)
            rec["cost"] = {k: run["cost"].get(k) for k in ("cpu_core_s", "gpu_s", "gpu_busy_share",
                                                          "segment_audio_s_per_gpu_s", "segment_audio_s_per_busy_gpu_s", "segment_audio_s_per_working_gpu_s", "engine_end_s",
                                                          "engine_start_s", "per_1000_audio_h",
                                                          "prediction") if run["cost"].get(k) is not None}
    stats = [json.loads(p.read_text()) for p in engines.glob("*.stats.json")]
    if stats:
        s = min(stats, key=lambda x: x["spawned_at"])  # a restarted engine's server writes a second file
        rec.update({"engine_spawned_s": round(s["spawned_at"] - t0, 1),
                    "engine_ready_s": round((s["ready_at"] or t0) - t0, 1),
                    "first_request_s": round((s["first_request_at"] or t0) - t0, 1),
                    "last_result_s": round((max(x["last_result_at"] or 0 for x in stats) or t0) - t0, 1),
                    "engine_requests": sum(x["requests"] for x in stats),
                    "engine_clients": len({c for x in stats for c in x["clients"]}),
                    "engine_servers": len(stats)})
    return rec


def outputs_check(index: Path, out: Path) -> dict:
    """What a user checks in the output directory itself: every index key once (transcript or failure
    record), none twice, and the segments the transcripts hold."""
    from collections import Counter

    keys = [json.loads(line)["key"] for line in index.read_text().splitlines() if line.strip()]
    done = Counter()
    segments = 0
    for kind in ("transcripts", "failures"):
        for p in out.glob(f"{kind}-*.jsonl"):
            for line in p.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    if kind == "transcripts" or r.get("segment_index") is None:
                        done[r["key"]] += 1
                    if kind == "transcripts":
                        segments += len(r.get("segments") or [])
    return {"keys_missing": len(set(keys) - set(done)), "keys_twice": sum(1 for n in done.values() if n > 1),
            "segments_in_transcripts": segments}


def forecast(args) -> None:
    """How well a sizing run (`--stop_after=segment`, label --sizing) predicted the GPU time of the full
    run (label --full): the cost lines of both, from this session's log."""
    lines = [r for r in _read_log() if r["step"] == "e2e" and r.get("cost")]
    sizing = [r for r in lines if r["label"] == args.sizing][-1]["cost"]["prediction"]
    full = [r for r in lines if r["label"] == args.full][-1]["cost"]
    measured = full["gpu_s"] / 3600
    log({"step": "forecast", "sizing": args.sizing, "full": args.full, "predicted_gpu_h": sizing["gpu_h"],
         "measured_gpu_h": round(measured, 4), "error": round(sizing["gpu_h"] / measured - 1, 3),
         "throughput_used": sizing["segment_audio_s_per_gpu_s"],
         "throughput_measured": full.get("segment_audio_s_per_working_gpu_s"),
         "gpu_h_per_1000_audio_h": (full.get("per_1000_audio_h") or {}).get("gpu_h"),
         "cpu_core_h_per_1000_audio_h": (full.get("per_1000_audio_h") or {}).get("cpu_core_h")})


# --------------------------------------------------------------------------------------------- fault


def _gpu_pids() -> list[int]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(x) for x in out.split() if x.strip().isdigit()]


def _engine_core(server: int) -> int:
    """vLLM's EngineCore under `server`: the process there that holds the GPU (without a GPU, with
    --fake: the double's core, a multiprocessing child)."""
    below = set(subtree(server, children_by_parent())) - {server}
    on_gpu = [p for p in _gpu_pids() if p in below]
    if on_gpu:
        return on_gpu[0]
    try:
        own = Path(f"/proc/{server}/cmdline").read_bytes()
    except OSError:
        own = None
    for pid in sorted(below):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"EngineCore" in cmdline or b"spawn_main" in cmdline or cmdline == own:  # own: a forked copy
            return pid
    raise RuntimeError(f"no engine core process under engine server {server}")


def _server_stats(engines: Path) -> dict:
    for p in engines.glob("*.stats.json"):
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            pass
    return {}


RUNNER_NAMES = {"direct": "DirectRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}


def fault(args, extra: list[str]) -> None:
    seen: dict = {}

    def kill(t0: float, engines: Path) -> None:
        time.sleep(max(0.0, t0 + args.kill_at - time.time()))
        while args.kill_after_ready is not None:  # or that long after the engine was ready
            ready = _server_stats(engines).get("ready_at")
            if ready and time.time() >= ready + args.kill_after_ready:
                break
            time.sleep(0.1)
        if args.target == "taskmanager":
            lc = _local_cluster()
            victim = lc._pids("flink")["taskmanager"]
            os.kill(victim, 9)
            killed = time.time()
            seen.update(killed_at_s=round(killed - t0, 1), victim=victim)
            time.sleep(2)
            lc.flink_taskmanager()  # another one, as Kubernetes starts the pod again
            seen["detected"] = None
            seen["ready_again"] = time.time() - killed  # the new TaskManager registered
            return
        server = _server_stats(engines).get("pid")
        victim = _engine_core(server) if args.target == "core" else server
        os.kill(victim, 9)
        killed = time.time()
        seen.update(killed_at_s=round(killed - t0, 1), victim=victim, server=server)
        while time.time() - killed < 600:
            stats = _server_stats(engines)
            again = stats.get("pid") not in (None, server)
            if "detected" not in seen and args.target == "core" and not alive(server):
                seen["detected"] = time.time() - killed
            if "detected" not in seen and again:  # a client saw the server gone and started this one
                seen["detected"] = stats["spawned_at"] - killed
            if again and stats.get("ready_at"):
                seen["ready_again"] = stats["ready_at"] - killed
                return
            time.sleep(0.05)

    args.resume_after_failure = True
    rec = e2e(args, extra, during=kill)
    undisturbed = [r for r in _read_log() if r["step"] == "e2e" and r["label"] == args.undisturbed and r["rc"] == 0]
    # the segments the undisturbed run wrote for this run's files (its index may be a part of that one's)
    expected = (_segments_for(Path(args.work) / args.undisturbed / "out", Path(args.work) / args.label / "index.jsonl")
                if undisturbed else None)
    failed = _segment_failures(Path(args.work) / args.label / "out")
    line = {"step": "engine_kill" if args.target in ("core", "server") else "runner_fault",
            "runner": RUNNER_NAMES[args.runner], "target": args.target, "label": args.label,
            "killed_at_s": seen.get("killed_at_s"), "detected_s": _round(seen.get("detected")),
            "ready_again_s": _round(seen.get("ready_again")), "wall_s": rec.get("first_wall_s", rec["wall_s"]),
            "undisturbed_wall_s": undisturbed[-1]["wall_s"] if undisturbed else None,
            "rc": rec.get("first_rc", rec["rc"]), "resume_rc": rec.get("resume_rc"),
            "resume_wall_s": rec.get("resume_wall_s"),
            "segments_expected": expected, "segments_in_transcripts": rec["segments_in_transcripts"],
            "segment_failures": failed,
            "segments_lost": None if expected is None else expected - rec["segments_in_transcripts"] - failed,
            "keys_missing": rec["keys_missing"], "keys_twice": rec["keys_twice"],
            "segments_cut": rec.get("segments"), "segments_transcribed": rec.get("segments_transcribed"),
            "segments_reused": rec.get("segments_reused"),
            "segments_failed": rec.get("segments_failed"), "run_json_segments_lost": rec.get("segments_lost"),
            "engine_restarts": rec.get("engine_restarts"), "final_rc": rec["rc"]}
    log(line, "faults.jsonl")


def _segments_for(out: Path, index: Path) -> int:
    """Segments in `out`'s transcripts and segment failure records for the keys of `index`."""
    keys = {json.loads(line)["key"] for line in index.read_text().splitlines() if line.strip()}
    return sum(_segment_counts(out, keys))


def _segment_counts(out: Path, keys: set | None = None) -> tuple[int, int]:
    """(segments in `out`'s transcripts, segment failure records), of `keys` only when given."""
    counts = [0, 0]
    for i, kind in enumerate(("transcripts", "failures")):
        for p in out.glob(f"{kind}-*.jsonl"):
            for line in p.read_text().splitlines():
                r = json.loads(line) if line.strip() else {}
                if r and (keys is None or r.get("key") in keys):
                    counts[i] += len(r.get("segments") or []) if i == 0 else r.get("segment_index") is not None
    return counts[0], counts[1]


def _segment_failures(out: Path) -> int:
    return _segment_counts(out)[1]


def orphan(args) -> None:
    """An engine server SIGKILLed with no job left (no client to clean up after it): how long its
    engine core, and the GPU it holds, outlive it. Twice: as shipped (the server's guard kills its
    process group) and with the guard killed first (as before it had one); one line each."""
    from asr_distill.asr.engine_server import read_stats, start_engines
    from asr_distill.config import load_config

    work = Path(args.work) / f"orphan-{args.label}"
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(bench_config(args.model, work / "teacher.yaml", args.teacher, args.real))
    os.environ["ASR_DISTILL_ENGINE_DIR"] = str(work / "engines")
    for guarded in (True, False):
        shutil.rmtree(work / "engines", ignore_errors=True)
        t0 = time.time()
        [spec] = start_engines(cfg.inference)
        while not (read_stats(spec) or {}).get("ready_at") and time.time() - t0 < 600:
            time.sleep(0.2)
        server = read_stats(spec)["pid"]
        core = _engine_core(server)
        guards = [p for p in process_group(server)
                  if b"asr_distill.processes" in Path(f"/proc/{p}/cmdline").read_bytes()]
        if not guarded:
            for p in guards:
                os.kill(p, 9)
        on_gpu_before = [p for p in _gpu_pids() if p in process_group(server)]
        os.kill(server, 9)
        killed = time.time()
        while alive(core) and time.time() - killed < args.orphan_wait:
            time.sleep(0.05)
        core_gone = None if alive(core) else round(time.time() - killed, 2)
        left = process_group(server)
        on_gpu_after = [p for p in _gpu_pids() if p in left]
        log({"step": "orphan", "label": args.label, "guard": guarded, "guards_found": len(guards),
             "engine_ready_s": round(read_stats(spec)["ready_at"] - t0, 1), "gpu_processes_before": len(on_gpu_before),
             "core_gone_s": core_gone, "waited_s": args.orphan_wait, "processes_left": len(left),
             "gpu_processes_left": len(on_gpu_after)}, "faults.jsonl")
        if left:  # clean up by hand for the next round, as the next job's client would
            os.killpg(server, 9)
            while process_group(server) and time.time() - killed < args.orphan_wait + 30:
                time.sleep(0.1)


def _round(x):
    return None if x is None else round(x, 1)


# ----------------------------------------------------------------------------------------------- raw


def _front_end(job):
    row, cfg_json = job
    from asr_distill.config import Config
    from asr_distill.media import decode_to_mono16k
    from asr_distill.records import DecodedAudio, IndexRow
    from asr_distill.segmenting import cut_segments, plan_segments
    from asr_distill.vad import SileroVad

    cfg = Config.model_validate(cfg_json)
    global _VAD
    if "_VAD" not in globals():
        _VAD = SileroVad(cfg.vad)
    with open(row["uri"], "rb") as f:
        wave = decode_to_mono16k(f, cfg.audio.max_duration_s)
    audio = DecodedAudio(IndexRow(row["key"], row["uri"], language=row.get("language")), wave)
    plan = plan_segments(_VAD.speech_regions(wave), wave, cfg.segmenting)
    return cut_segments(audio, plan)  # a pickled view carries only its own samples


def raw(args) -> None:
    from asr_distill.asr.families import family_for
    from asr_distill.asr.vllm_backend import VllmBackend, engine_args
    from asr_distill.config import load_config

    work = Path(args.work) / f"raw{args.raw_label}"
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(bench_config(args.model, work / "teacher.yaml", args.teacher, args.real))
    index = scaled_index(Path(args.index), 1, work / "index.jsonl")
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    t = time.time()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        segments = [s for segs in pool.map(_front_end, [(r, cfg.model_dump(mode="json")) for r in rows],
                                           chunksize=4) for s in segs]
    front_s = time.time() - t
    backend = VllmBackend(cfg.inference, engines=object())  # builds requests only
    requests = [backend.request(s) for s in segments]
    sampling = [backend.sampling_kwargs(s) for s in segments]
    segment_audio_s = sum(len(s.audio) for s in segments) / 16000
    t0 = time.time()  # engine start as a user's script has it: importing vLLM included
    from vllm import LLM, SamplingParams

    llm = LLM(**engine_args(cfg.inference, family_for(cfg.inference.model, cfg.inference.model_family)))
    started = time.time()
    outs = llm.generate(requests, [SamplingParams(**k) for k in sampling], use_tqdm=False)
    done = time.time()
    assert len(outs) == len(segments)
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    log({"step": "raw", "label": args.raw_label, "segments": len(segments), "segment_audio_s": round(segment_audio_s, 1),
         "front_end_s": round(front_s, 1), "engine_start_s": round(started - t0, 1),
         "generate_s": round(done - started, 1), "wall_s": round(done - t0, 1), "output_tokens": tokens,
         "segment_audio_s_per_s": round(segment_audio_s / (done - t0), 1),
         "generate_only_audio_s_per_s": round(segment_audio_s / (done - started), 1)})


def report(_args) -> None:
    lines = _read_log()
    for r in lines:
        raws = [x for x in lines if x["step"] == "raw" and x.get("label", "") == r.get("raw", "")]
        if r["step"] == "e2e" and raws and r.get("rc") == 0:
            ref = raws[-1]
            same = r["segments"] == ref["segments"]
            log({"step": "ratio", "label": r["label"], "runner": r.get("runner", "DirectRunner"),
                 "e2e_over_raw": round(ref["wall_s"] / r["wall_s"], 3),
                 "same_segments": same, "segments": r["segments"], "raw_segments": ref["segments"]})


def segment_texts(out: Path) -> dict:
    """(key, start_s, end_s) -> text of every segment in a run's transcripts."""
    texts = {}
    for p in out.glob("transcripts-*.jsonl"):
        for line in p.read_text().splitlines():
            if line.strip():
                t = json.loads(line)
                for seg in t.get("segments") or []:
                    texts[(t["key"], round(seg["start_s"], 3), round(seg["end_s"], 3))] = seg["text"]
    return texts


def compare(args) -> None:
    """Two runs' segment texts, side by side: the same segments, and how many texts are equal."""
    a, b = (segment_texts(Path(args.work) / label / "out") for label in args.labels)
    both = sorted(set(a) & set(b))
    differ = [k for k in both if a[k] != b[k]]
    log({"step": "same_texts", "a": args.labels[0], "b": args.labels[1], "segments_a": len(a), "segments_b": len(b),
         "same_segments": set(a) == set(b), "texts_equal": len(both) - len(differ), "texts_different": len(differ),
         "examples": [{"key": k[0], "start_s": k[1], "a": a[k][:80], "b": b[k][:80]} for k in differ[:3]]})


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["e2e", "raw", "fault", "orphan", "report", "forecast", "compare", "cluster"])
    ap.add_argument("--runner", choices=["direct", "flink", "spark"], default="direct",
                    help="e2e/fault: DirectRunner, or a Flink/Spark cluster started on this machine")
    ap.add_argument("--slots", type=int, default=os.cpu_count(), help="the cluster's task slots (Spark: cores)")
    ap.add_argument("--sdk-workers", type=int, default=0, help="--sdk_worker_parallelism (default: --slots)")
    ap.add_argument("--taskmanager-memory", default="12g", help="Flink's taskmanager.memory.process.size")
    ap.add_argument("--labels", nargs=2, help="compare: the two e2e labels whose texts are compared")
    ap.add_argument("--index")
    ap.add_argument("--model", default="fake-qwen2-audio")
    ap.add_argument("--label", default="default")
    ap.add_argument("--raw-label", default="", help="which raw run an e2e run is compared with")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--work", default=os.environ.get("BENCH_WORK", "/tmp/gpu_e2e"))  # as _logs()
    ap.add_argument("--teacher", type=Path, default=TEACHER, help="the config the benchmark starts from")
    ap.add_argument("--real", action="store_true", help="real weights and outputs (no dummy, no fixed length)")
    ap.add_argument("--keep", type=int, default=0, help="copy this many transcript records to $OUT")
    ap.add_argument("--fake", action="store_true")
    ap.add_argument("--target", choices=["core", "server", "taskmanager"], default="core",
                    help="fault: what is killed (taskmanager: --runner flink; another is started, as Kubernetes would)")
    ap.add_argument("--kill-at", type=float, default=80.0, help="fault: seconds into the run")
    ap.add_argument("--kill-after-ready", type=float, default=None,
                    help="fault: seconds after the engine was ready (on a cold machine, instead of --kill-at)")
    ap.add_argument("--undisturbed", default="default", help="fault: the e2e label it is compared with")
    ap.add_argument("--orphan-wait", type=float, default=20.0, help="orphan: seconds to wait for the core to go")
    ap.add_argument("--sizing", default="sizing", help="forecast: the label of the --stop_after=segment run")
    ap.add_argument("--full", default="cost-full", help="forecast: the label of the full run it predicted")
    args = ap.parse_args(argv)
    args.resume_after_failure = False
    if args.fake:  # every process this starts (the CLI, a cluster's worker pool, engine servers) uses the double
        os.environ.update(ASR_DISTILL_VLLM_ENGINE="fake_vllm",
                          PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    {"e2e": lambda: e2e(args, extra), "raw": lambda: raw(args), "fault": lambda: fault(args, extra),
     "orphan": lambda: orphan(args),
     "report": lambda: report(args), "forecast": lambda: forecast(args), "compare": lambda: compare(args),
     "cluster": lambda: cluster_up(args)}[args.step]()


if __name__ == "__main__":
    main()
