"""Engine servers: one engine per GPU copy shared by every SDK worker process, restarted when it dies,
a loud failure when it cannot go on. The CLI runs as a user runs it (DirectRunner, vllm backend, one
worker process per core), with the engine double (tests/fake_vllm.py) in every process."""

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Listener
from pathlib import Path

import numpy as np
import pytest

from asr_distill.asr import engine_server
from asr_distill.asr.engine_server import RemoteEngines, engine_specs, read_stats
from asr_distill.asr.engine_loop import EngineFailedError
from asr_distill.asr.vllm_backend import VllmBackend
from asr_distill.config import InferenceConfig
from asr_distill.processes import alive, children_by_parent
from asr_distill.records import Segment
from conftest import read_jsonl, write_index

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def engine_env(monkeypatch, tmp_path):
    """Every process of the job (and the servers they start) uses the double and a private engine dir."""
    monkeypatch.setenv("ASR_DISTILL_VLLM_ENGINE", "fake_vllm")
    monkeypatch.setenv("ASR_DISTILL_ENGINE_DIR", str(tmp_path / "engines"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "engines"


def _config(tmp_path, **inference) -> Path:
    lines = ["inference:", "  backend: vllm", "  model: fake-qwen2-audio", "  batch_size: 4"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in inference.items()]
    cfg = tmp_path / "vllm.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _cli(*args, wait=True, **popen):
    cmd = [sys.executable, "-m", "beam_pipeline", "--quiet", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return proc.communicate(timeout=600) + (proc.returncode,) if wait else proc


def _talks(long_forms, copies: int) -> list[dict]:
    return [{"key": f"{name}-{c}", "uri": str(t.path)} for c in range(copies) for name, t in long_forms.items()]


def _assert_texts_belong_to_their_segments(transcripts):
    for t in transcripts:
        for s in t["segments"]:  # the double answers with the duration of the audio it was sent
            heard = float(s["text"].split(" lasts ")[1].split()[0])
            assert abs(heard - (s["end_s"] - s["start_s"])) <= 0.06, (t["key"], s)


def test_every_worker_process_feeds_one_engine_server(tmp_path, engine_env, long_forms):
    """The README's command on DirectRunner: processes across the cores, one engine for all of them,
    every segment back once; our own flags are not shipped to the workers (no warning per process)."""
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 2))
    out = tmp_path / "o"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    stdout, stderr, rc = _cli(f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path)}",
                              "--no_such_beam_flag=1")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert rc == 0, stderr
    record = json.loads((out / "run.json").read_text())
    # the cost the run measured: every process's CPU, the engine's GPU time, per 1000 audio hours
    cost, waited_cpu_s = record["cost"], sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime"))
    print("cost:", cost, "CPU of the processes the command waited for:", waited_cpu_s)
    by = cost["cpu_core_s_by_process"]
    assert by["workers"] > 0 and by["launcher"] > 0 and by["engine_servers"] > 0 and cost["engine_servers"] == 1
    assert 0.8 * waited_cpu_s <= cost["cpu_core_s"] <= 1.2 * waited_cpu_s + by["engine_servers"]
    assert 0 < cost["mean_busy_cores"] <= len(os.sched_getaffinity(0)) + 0.5
    assert 0 < cost["gpu_s"] <= record["wall_s"] + 15  # the engine started before the run's clock
    assert 0 < cost["gpu_busy_share"] <= 1
    # working (ready or first request, to last result) is within busy (first request to last result)
    assert cost["segment_audio_s_per_working_gpu_s"] >= cost["segment_audio_s_per_busy_gpu_s"] > 0
    assert cost["engine_start_s"] + cost["engine_end_s"] <= cost["gpu_s"]
    per = cost["per_1000_audio_h"]
    assert per["gpu_h"] == pytest.approx(cost["gpu_s"] * 1000 / record["audio_s"], rel=0.01)
    assert per["cpu_core_h"] == pytest.approx(cost["cpu_core_s"] * 1000 / record["audio_s"], rel=0.01)
    assert per["money"] is None  # no prices in the config
    assert f"cost: {cost['cpu_core_s']:.0f} CPU-core-s" in stdout
    assert record["environment"]["running_mode"] == "multi_processing"
    assert record["environment"]["num_workers"] == len(os.sched_getaffinity(0))
    seg = record["segment_accounting"]
    assert record["segments_reconciled"] and seg["cut"] == seg["transcribed"] > 0 and seg["lost"] == 0
    assert "every segment accounted for: yes" in stdout
    transcripts = read_jsonl(out, "transcripts")
    assert sorted(t["key"] for t in transcripts) == sorted(r["key"] for r in _talks(long_forms, 2))
    assert all(t["status"] == "ok" for t in transcripts) and read_jsonl(out, "failures") == []
    _assert_texts_belong_to_their_segments(transcripts)
    [stats] = [json.loads(p.read_text()) for p in engine_env.glob("*.stats.json")]
    assert stats["results"] == seg["transcribed"] and stats["exit"] == "shut down by its launcher"
    assert len(set(stats["clients"])) >= 2  # requests from more than one worker process
    base = os.nice(0)  # the engine keeps the command's priority; the front end yields the CPU to it
    workers = {int(pid): nice for pid, nice in stats["client_nice"].items() if int(pid) != stats["pid"]}
    assert stats["nice"] == base and set(workers.values()) == {min(19, base + 10)}
    assert not alive(stats["pid"])  # the GPU is free when the command returns
    assert stderr.count("Discarding unparseable args") == 1 and "--input_index" not in stderr


def _kill_mid_run(job, engine_env, target) -> tuple[int, int]:
    """SIGKILL to `target(server pid)` once the engine has answered some requests and holds others:
    (the pid killed, the server's)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        for path in engine_env.glob("*.stats.json"):
            stats = json.loads(path.read_text())
            pid = target(stats["pid"]) if stats["results"] >= 2 and stats["requests"] > stats["results"] else None
            if pid:
                os.kill(pid, signal.SIGKILL)  # requests are in flight
                return pid, stats["pid"]
        time.sleep(0.05)
    raise AssertionError(f"the job ended before its engine could be killed: {job.communicate()}")


def _engine_core(server_pid: int):
    """The engine core process under a server: the double's forked child, as vLLM's EngineCore is."""
    server = Path(f"/proc/{server_pid}/cmdline").read_bytes()
    for pid in children_by_parent().get(server_pid, []):
        if Path(f"/proc/{pid}/cmdline").read_bytes() == server:
            return pid
    return None


def _assert_completed_after_restart(job, out, n_files: int) -> dict:
    stdout, stderr = job.communicate(timeout=600)
    assert job.returncode == 0, stderr
    record = json.loads((out / "run.json").read_text())
    seg = record["segment_accounting"]
    assert seg["engine_restarts"] >= 1 and seg["lost"] == 0 and seg["failed"] == 0
    assert record["segments_reconciled"] and seg["cut"] == seg["transcribed"]
    transcripts = read_jsonl(out, "transcripts")
    assert len(transcripts) == n_files and all(t["status"] == "ok" for t in transcripts)
    assert read_jsonl(out, "failures") == []
    _assert_texts_belong_to_their_segments(transcripts)
    return record


def test_an_engine_server_killed_mid_run_is_restarted_and_nothing_is_lost(tmp_path, engine_env, long_forms,
                                                                          monkeypatch):
    """The server SIGKILLed, its engine core orphaned. vLLM forks its core late in a long start, after
    the workers connected (on an H200, 27 s after the server's start): the orphan then holds copies
    of their connections, so they never read an end of file (that hung the README command on an H200
    until its time ran out). They must see the server's process gone instead."""
    monkeypatch.setenv("FAKE_VLLM_STEP_S", "0.05")  # a 20 s segment takes about a second
    monkeypatch.setenv("FAKE_VLLM_START_S", "15")  # the core is forked after the clients connected
    monkeypatch.setenv("FAKE_VLLM_SLOW_START_ONCE", str(tmp_path / "slow-started"))  # the restarted one: at once
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 3))
    out = tmp_path / "o"
    job = _cli(f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path)}", wait=False)
    cores = []
    killed, _ = _kill_mid_run(job, engine_env, lambda server: cores.append(_engine_core(server)) or server)
    _assert_completed_after_restart(job, out, 9)
    [stats] = [json.loads(p.read_text()) for p in engine_env.glob("*.stats.json")]
    assert stats["pid"] != killed  # the restarted server finished the job
    assert cores[0] and not alive(cores[0])  # and the killed one's orphaned engine core did not hold the GPU


def test_an_engine_core_killed_mid_run_is_seen_at_once_and_nothing_is_lost(tmp_path, engine_env, long_forms,
                                                                           monkeypatch):
    """The fault that hung the README command on an H200: vLLM's engine core process killed while the
    server that owns it lives on (its step() then never returns). The server sees it, exits, and the
    job goes on on a restarted engine long before any timeout."""
    monkeypatch.setenv("FAKE_VLLM_STEP_S", "0.05")
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 3))
    out = tmp_path / "o"
    job = _cli(f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path, vllm={'stall_s': 600})}",
               wait=False)
    _core, server = _kill_mid_run(job, engine_env, _engine_core)
    deadline = time.monotonic() + 10
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(server), "the server outlived its engine core by 10 s"
    _assert_completed_after_restart(job, out, 9)
    log = next(engine_env.glob("*.log")).read_text()
    assert "engine core process" in log and "ended (-9)" in log  # the cause, in the server's log


def test_a_stalled_engine_is_replaced_and_nothing_is_lost(tmp_path, engine_env, long_forms, monkeypatch):
    """An engine that is alive but makes no progress (a hung kernel, a wedged collective) for
    vllm.stall_s is taken for dead: what it held goes to a new engine."""
    monkeypatch.setenv("FAKE_VLLM_STEP_S", "0.02")
    monkeypatch.setenv("FAKE_VLLM_STALL_AT_STEP", "30")
    monkeypatch.setenv("FAKE_VLLM_FAULT_ONCE", str(tmp_path / "stalled-once"))
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 2))
    out = tmp_path / "o"
    job = _cli(f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path, vllm={'stall_s': 2})}",
               wait=False)
    _assert_completed_after_restart(job, out, 6)
    assert (tmp_path / "stalled-once").exists()


def _assert_failed_loudly(out, stderr: str, rc: int, cause: str) -> dict:
    assert rc == 1
    [line] = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert "the vLLM engine failed" in line and cause in line and "engine_restarts=" in line
    assert "Traceback" not in stderr.split("error:")[-1]
    assert (out / "_work").exists()  # --resume goes on from here
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and cause in record["error"]
    lost = record["segments_lost"]
    assert lost and all(set(s) == {"key", "index", "start_s", "end_s"} for s in lost)
    return record


def test_an_engine_that_keeps_dying_fails_the_job_loudly(tmp_path, engine_env, long_forms, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_FAIL_AT_STEP", "3")
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 1))
    out = tmp_path / "o"
    stdout, stderr, rc = _cli(f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path)}")
    record = _assert_failed_loudly(out, stderr, rc, "died 3 times")
    assert "failed a step" in record["error"] and "engine_restarts=2" in record["error"]
    lost = record["segments_lost"]
    assert len({(s["key"], s["index"]) for s in lost}) == len(lost)  # each lost segment named once


def test_an_engine_that_keeps_stalling_fails_the_job_in_bounded_time(tmp_path, engine_env, long_forms, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_STALL_AT_STEP", "5")  # every engine, every time
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 1))
    out = tmp_path / "o"
    started = time.monotonic()
    stdout, stderr, rc = _cli(f"--input_index={index}", f"--output={out}",
                              f"--config={_config(tmp_path, vllm={'stall_s': 1, 'engine_restarts': 1})}")
    _assert_failed_loudly(out, stderr, rc, "died 2 times")
    assert "stalled" in stderr and "engine_restarts=1" in stderr
    assert time.monotonic() - started < 120  # two stalls of 1 s, two engine starts: no timeout waited for
    assert not list(engine_env.glob("*.pid")) or not any(alive(int(p.read_text())) for p in engine_env.glob("*.pid"))


def test_an_engine_that_cannot_start_says_why(tmp_path, engine_env, long_forms, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_START_ERROR", "CUDA out of memory: tried to allocate 70 GiB")
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 1))
    stdout, stderr, rc = _cli(f"--input_index={index}", f"--output={tmp_path / 'o'}",
                              f"--config={_config(tmp_path)}", "--direct_num_workers=1")
    assert rc == 1
    assert "error: the vLLM engine failed" in stderr and "CUDA out of memory: tried to allocate 70 GiB" in stderr


def test_model_copies_get_their_own_gpus_and_every_process_reaches_each(tmp_path, engine_env, long_forms,
                                                                        monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 3))
    out = tmp_path / "o"
    stdout, stderr, rc = _cli(f"--input_index={index}", f"--output={out}",
                              f"--config={_config(tmp_path, model_copies=2)}",
                              "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert rc == 0, stderr
    record = json.loads((out / "run.json").read_text())
    stats = sorted((json.loads(p.read_text()) for p in engine_env.glob("*.stats.json")), key=lambda s: s["copy"])
    assert [(s["copy"], s["cuda_visible_devices"]) for s in stats] == [(0, "3"), (1, "5")]
    assert sum(s["results"] for s in stats) == record["segment_accounting"]["transcribed"]
    assert all(s["results"] > 0 for s in stats)
    worker_pids = [set(s["clients"]) - {os.getpid()} for s in stats]
    assert worker_pids[0] == worker_pids[1] and len(worker_pids[0]) == 2  # both workers reached both copies
    assert record["segments_reconciled"]


def test_copies_are_spread_over_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    cfg = InferenceConfig(backend="vllm", model="m", model_copies=2, vllm={"tensor_parallel_size": 2})
    assert [s.devices for s in engine_specs(cfg)] == ["0,1", "2,3"]
    assert [s.devices for s in engine_specs(InferenceConfig(backend="vllm", model="m"))] == [None]
    with pytest.raises(EngineFailedError, match="needs 6 GPUs"):
        engine_specs(InferenceConfig(backend="vllm", model="m", model_copies=3, vllm={"tensor_parallel_size": 2}))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [s.devices for s in engine_specs(InferenceConfig(backend="vllm", model="m", model_copies=2))] == ["0", "1"]


def test_threads_of_one_process_share_a_connection_and_requests_fail_alone(engine_env):
    cfg = InferenceConfig(backend="vllm", model="m", share_across_processes=True)
    backend = VllmBackend(cfg, engines=RemoteEngines.for_config(cfg))
    results = {}

    def batch(t):
        segs = [Segment("f", t * 10 + i, 0.0, 2.0 + i, np.full(int((2 + i) * 16000), float(t * 10 + i), np.float32))
                for i in range(5)]
        if t == 0:
            segs.append(Segment("f", 99, 0.0, 31.0, np.zeros(31 * 16000, np.float32)))
        results[t] = backend.transcribe_segments(segs)

    threads = [threading.Thread(target=batch, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t, out in results.items():
        assert [r.text for r in out[:5]] == [f"marker {t * 10 + i} lasts {2 + i:.1f} seconds" for i in range(5)]
    assert isinstance(results[0][5], ValueError) and "max_model_len" in str(results[0][5])
    spec = backend.engines.specs[0]
    engine_server.stop_engines([spec])
    stats = read_stats(spec)
    assert stats["results"] == 20 and stats["request_errors"] == 1 and stats["clients"] == [os.getpid()]


def _one_spec():
    [spec] = engine_specs(InferenceConfig(backend="vllm", model="m"))
    spec.path("sock").parent.mkdir(parents=True, exist_ok=True)
    return spec


def test_a_server_that_goes_away_while_a_client_connects_is_started_again(engine_env):
    """A killed server's socket can still take a connection and then reset it (seen in CI): the client
    starts a new server instead of failing its bundle."""
    spec = _one_spec()
    dying = socket.socket(socket.AF_UNIX)
    dying.bind(str(spec.path("sock")))
    dying.listen(4)
    threading.Timer(0.5, dying.close).start()  # closed with the client's connection still pending
    conn, hello, started, _restarted = engine_server.connect_or_start(spec)
    try:
        assert started and hello["state"] in ("starting", "ready") and alive(hello["pid"])
    finally:
        conn.close()
        engine_server.stop_engines([spec])
    assert not alive(hello["pid"])


def test_a_killed_server_with_no_job_left_leaves_no_engine_core_behind(engine_env):
    """The whole job gone and its server SIGKILLed: no client is left to clean up after it, so the
    server's guard kills the orphaned engine core (which would hold the GPU until someone noticed)."""
    spec = _one_spec()
    conn, hello, _started, _restarted = engine_server.connect_or_start(spec)
    conn.close()
    server = hello["pid"]
    deadline = time.monotonic() + 60
    while not (core := _engine_core(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core and alive(core)
    group = [pid for pid in children_by_parent().get(server, []) if pid != core]
    assert len(group) == 1 and b"guard" in Path(f"/proc/{group[0]}/cmdline").read_bytes()
    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (alive(core) or alive(group[0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(core) and not alive(group[0])


def test_a_server_that_goes_away_after_its_hello_fails_requests_as_died(engine_env):
    """Requests to a server that said hello and died are EngineDiedError (sent again to a new server
    by generate_all), not an error of the client's own."""
    spec = _one_spec()
    listener = Listener(str(spec.path("sock")), family="AF_UNIX")

    def hello_then_die():
        conn = listener.accept()
        conn.send(("hello", {"pid": 1, "state": "ready", "message": ""}))
        conn.close()
        listener.close()

    threading.Thread(target=hello_then_die).start()
    client = engine_server.EngineClient(spec)
    assert not client.started
    future = client.submit("r0", {"prompt": "x"}, {})
    with pytest.raises(engine_server.EngineDiedError, match="went away"):
        future.result(timeout=10)


def test_a_usage_error_does_not_wait_for_an_engine_that_is_still_loading(tmp_path, engine_env, long_forms,
                                                                       monkeypatch):
    """The command starts the engine before anything else; when it then refuses to run (here: the
    output holds results), the engine goes at once, not after it has loaded."""
    monkeypatch.setenv("FAKE_VLLM_START_S", "300")
    index = write_index(tmp_path / "i.jsonl", _talks(long_forms, 1))
    out = tmp_path / "o"
    out.mkdir()
    (out / "transcripts-0.jsonl").write_text("{}\n")
    started = time.monotonic()
    stdout, stderr, rc = _cli(f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path)}")
    assert rc == 2 and "already holds results" in stderr
    [stats] = [json.loads(p.read_text()) for p in engine_env.glob("*.stats.json")]
    assert stats["ready_at"] is None and "shut down by its launcher" in stats["exit"]
    assert not alive(stats["pid"])
    assert time.monotonic() - started < 120  # far less than the engine's 300 s start


def test_sdk_worker_processes_exit_without_tearing_their_modules_down(tmp_path):
    """A process the runner started as an SDK worker skips the interpreter's teardown (torch's takes
    ~0.7 s a process, and DirectRunner closes its workers one by one); anything else exits normally."""
    script = ("import atexit; atexit.register(lambda: print('torn down', flush=True)); "
              "import transforms.common; print('work done', flush=True)")
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent))
    plain = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    worker = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**env, "CONTROL_API_SERVICE_DESCRIPTOR": "url: 'localhost:1'"})
    assert plain.returncode == worker.returncode == 0
    assert plain.stdout.split() == ["work", "done", "torn", "down"]
    assert worker.stdout.split() == ["work", "done"]
