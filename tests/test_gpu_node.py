"""What a GPU node of a cluster needs beyond DirectRunner: the front end off the engine's CPUs and below
its priority, the engine server taking both back, the engine started from the job's first task, and a
Flink job that runs on every task slot of the cluster."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import FlinkRunnerOptions, JobServerOptions, PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill import cpus
from asr_distill.asr.engine_server import engine_specs, read_stats, start_engines, stop_engines, wait_ready
from asr_distill.config import Config, load_config
from beam_pipeline.pipeline import build, use_cluster_parallelism
from transforms.engines import StartEngines

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_the_engine_gets_whole_cores_from_the_top_and_the_front_end_keeps_one(monkeypatch):
    smt = {c: {c % 8, c % 8 + 8} for c in range(16)}  # 8 cores, two hyperthreads each: (i, i+8)
    monkeypatch.setattr(cpus, "siblings", lambda c: smt[c])
    assert cpus.engine_cpu_set(2, set(range(16))) == {7, 15}  # one whole core, not two halves
    assert cpus.engine_cpu_set(3, set(range(16))) == {6, 7, 14, 15}
    monkeypatch.setattr(cpus, "siblings", lambda c: {c})  # one thread per core, as the lent H100 shows
    assert cpus.engine_cpu_set(2, set(range(16))) == {14, 15}
    assert cpus.engine_cpu_set(2, {3, 9, 12}) == {9, 12}  # from what the process may use
    assert cpus.engine_cpu_set(8, {0, 1}) == {1}  # never every CPU: the front end keeps one
    assert cpus._parse_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}


def _in_child(code: str, **popen) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, **popen)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to keep one for the engine")
def test_a_front_end_process_yields_and_an_engine_server_takes_the_machine_back():
    """A front-end process (an SDK worker, the launcher) drops to its niceness and off the engine's CPUs;
    a process it spawns after that, as an engine server, takes every CPU back (and its priority where
    it is allowed to: raising it needs root)."""
    code = """
import json, os, subprocess, sys
from asr_distill.cpus import yield_to_engine
before = sorted(os.sched_getaffinity(0))
mine = sorted(yield_to_engine(5, 1))
child = subprocess.run([sys.executable, "-c", "import json, os; from asr_distill.cpus import take_machine; "
                        "take_machine(); print(json.dumps([sorted(os.sched_getaffinity(0)), os.nice(0)]))"],
                       capture_output=True, text=True, check=True)
print(json.dumps({"before": before, "mine": mine, "now": sorted(os.sched_getaffinity(0)), "nice": os.nice(0),
                  "engine": json.loads(child.stdout)}))
"""
    got = _in_child(code)
    assert got["mine"] == got["now"] == got["before"][:-1]  # the top CPU is the engine's
    assert got["nice"] >= 5
    engine_cpus, engine_nice = got["engine"]
    assert engine_cpus == got["before"]
    assert engine_nice == (0 if os.geteuid() == 0 else got["nice"])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to keep one for the engine")
def test_once_the_engine_is_ready_the_front_end_moves_to_its_wider_set_and_the_engine_stays_put():
    """DirectRunner's launcher keeps its SDK workers off more CPUs while the engine starts
    (vllm.engine_start_cpus), then moves every thread of itself and of them, not the engine server (a
    session of its own), to the set it keeps after the start."""
    code = """
import json, os, subprocess, sys, time
from asr_distill.cpus import front_end_cpus, move_front_end, yield_to_engine
allowed = sorted(os.sched_getaffinity(0))
after = sorted(yield_to_engine(0, 0, 1))  # engine_cpus 0, engine_start_cpus 1
narrow, later = sorted(os.sched_getaffinity(0)), sorted(front_end_cpus())
sleeper = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"
worker = subprocess.Popen([sys.executable, "-c", sleeper])
engine = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
time.sleep(1.5)  # both have their second thread
moved = move_front_end(front_end_cpus())
cpus = lambda pid: [sorted(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{pid}/task")]
print(json.dumps({"allowed": allowed, "after": after, "later": later, "narrow": narrow, "moved": moved, "me": cpus(os.getpid()),
                  "worker": cpus(worker.pid), "engine": cpus(engine.pid)}))
worker.kill(); engine.kill()
"""
    got = _in_child(code)
    assert got["narrow"] == got["allowed"][:-1]  # while the engine starts
    assert got["after"] == got["later"] == got["allowed"]  # what the job sizes its workers by
    assert got["worker"] == [got["allowed"]] * 2 and got["me"] == [got["allowed"]] * len(got["me"])
    assert got["engine"] == [got["narrow"]] * 2  # as it was: the engine server takes its own CPUs
    assert got["moved"] == len(got["me"]) + 2


def test_wait_ready_says_when_the_engine_is_up_and_when_it_will_not_be(engine_env, tmp_path, monkeypatch):
    """What the launcher waits on before it widens the front end: the server it started says ready;
    a server whose engine failed to start says so at once, not at the timeout."""
    cfg = _vllm_config(tmp_path)
    monkeypatch.setenv("FAKE_VLLM_START_S", "1.0")
    specs = start_engines(cfg.inference)
    try:
        t = time.monotonic()
        assert wait_ready(specs, 60) and time.monotonic() - t >= 0.5
        assert (read_stats(specs[0]) or {}).get("ready_at")
    finally:
        stop_engines(specs)
    monkeypatch.setenv("FAKE_VLLM_START_ERROR", "no GPU here")
    monkeypatch.setenv("ASR_DISTILL_ENGINE_DIR", str(tmp_path / "engines-failing"))
    specs = start_engines(cfg.inference)
    t = time.monotonic()
    assert not wait_ready(specs, 60) and time.monotonic() - t < 30


def test_an_engine_dir_too_long_for_a_socket_still_serves(engine_env, tmp_path, monkeypatch):
    """A Unix socket's path has 108 bytes: under a long ASR_DISTILL_ENGINE_DIR (a deep tmp dir) the
    socket moves to a short folder derived from that dir, and the server starts and answers."""
    cfg = _vllm_config(tmp_path)
    engines = tmp_path / ("engines-" + "d" * 90)
    monkeypatch.setenv("ASR_DISTILL_ENGINE_DIR", str(engines))
    specs = start_engines(cfg.inference)
    try:
        sock = specs[0].path("sock")
        assert len(str(engines / sock.name)) > 107 and len(str(sock)) <= 107 and sock == specs[0].path("sock")
        assert wait_ready(specs, 60) and sock.is_socket()
        assert specs[0].path("log").parent == engines  # the rest stays where it was asked to be
    finally:
        stop_engines(specs)


@pytest.fixture
def engine_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_DISTILL_VLLM_ENGINE", "fake_vllm")
    monkeypatch.setenv("ASR_DISTILL_ENGINE_DIR", str(tmp_path / "engines"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "engines"


def _vllm_config(tmp_path) -> Config:
    path = tmp_path / "vllm.yaml"
    path.write_text("inference:\n  backend: vllm\n  model: fake-qwen2-audio\n  batch_size: 4\n")
    return load_config(path)


def test_the_first_task_starts_the_engine_server(engine_env, tmp_path):
    """StartEngines alone, as the job's first task runs it: the engine server of the config starts
    (and is the one the inference step then connects to: same spec, same socket)."""
    cfg = _vllm_config(tmp_path)
    with BeamTestPipeline() as p:
        p | StartEngines(cfg.inference)
    [spec] = engine_specs(cfg.inference)
    try:
        deadline = time.monotonic() + 60
        while not (read_stats(spec) or {}).get("ready_at") and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = read_stats(spec)
        assert stats and stats["ready_at"] and stats["requests"] == 0
    finally:
        stop_engines([spec])
    assert read_stats(spec)["exit"]  # it ended when told to


def _labels(p: beam.Pipeline) -> set:
    return {t.unique_name for t in p.to_runner_api().components.transforms.values()}


def test_the_engine_start_is_a_step_of_portable_vllm_jobs_only(tmp_path):
    index = tmp_path / "i.jsonl"
    index.write_text("")
    vllm, whisper = _vllm_config(tmp_path), Config()
    for cfg, start, stop_after, wanted in [(vllm, True, None, True), (vllm, False, None, False),
                                           (vllm, True, "segment", False), (whisper, True, None, False)]:
        p = beam.Pipeline()
        build(p, cfg, str(index), str(tmp_path / "out"), stop_after=stop_after, start_engines=start)
        assert ("StartEngines" in _labels(p)) == wanted, (cfg.inference.backend, start, stop_after)
        if wanted:  # upstream of the index's rows, so no runner leaves it to the job's end (Spark did)
            transforms = p.to_runner_api().components.transforms.values()
            started = {pc for t in transforms if t.unique_name == "StartEngines/Start" for pc in t.outputs.values()}
            [flatten] = [t for t in transforms if t.unique_name == "AfterStartEngines"]
            assert started and started <= set(flatten.inputs.values())


class _SparkMaster(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the handler's name)
        body = json.dumps({"cores": 12, "coresused": 0, "aliveworkers": 3}).encode() if self.path == "/json/" else b"{}"
        self.send_response(200 if self.path == "/json/" else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_sparks_own_job_server_partitions_by_the_clusters_cores(monkeypatch, caplog):
    """SparkRunner starting its own job server: spark.default.parallelism = the master's cores (Beam's
    Spark runner read 2 otherwise, before executors registered); a job server of one's own, or the
    property given, stand; a master that does not answer is a warning that says what to pass."""
    from beam_pipeline import pipeline

    server = HTTPServer(("localhost", 0), _SparkMaster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(pipeline, "SPARK_MASTER_UI_PORT", server.server_address[1])
    args = ["--runner=SparkRunner", "--spark_master_url=spark://localhost:7077"]
    try:
        options = PipelineOptions(args)
        assert use_cluster_parallelism(options, args) == 12
        assert "-Dspark.default.parallelism=12" in options.view_as(JobServerOptions).job_server_jvm_properties
        for given in (args + ["--job_endpoint=localhost:8199"],
                      args + ["--job_server_jvm_properties=-Dspark.default.parallelism=3"]):
            options = PipelineOptions(given)
            assert use_cluster_parallelism(options, given) is None
            assert options.view_as(JobServerOptions).job_server_jvm_properties in ([], ["-Dspark.default.parallelism=3"])
    finally:
        server.shutdown()
    options = PipelineOptions(args)  # nothing answers there now
    assert use_cluster_parallelism(options, args) is None
    assert options.view_as(JobServerOptions).job_server_jvm_properties == []
    assert "could not ask the Spark master" in caplog.text and "spark.default.parallelism=N" in caplog.text


class _FlinkRest(BaseHTTPRequestHandler):
    slots = 6

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"slots-total": self.slots, "taskmanagers": 2}).encode()
        self.send_response(200 if self.path == "/overview" else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_flink_job_runs_on_every_slot_of_the_cluster(caplog):
    """Beam's job server runs a job without --parallelism at 1 (it reads none of the cluster's
    configuration): the CLI asks the cluster's REST API for its slots."""
    server = HTTPServer(("localhost", 0), _FlinkRest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    master = f"localhost:{server.server_port}"
    try:
        args = ["--runner=FlinkRunner", f"--flink_master={master}"]
        options = PipelineOptions(args)
        assert use_cluster_parallelism(options, args) == 6
        assert options.view_as(FlinkRunnerOptions).parallelism == 6
        given = args + ["--parallelism=3"]  # the user's choice stands
        options = PipelineOptions(given)
        assert use_cluster_parallelism(options, given) is None
        assert options.view_as(FlinkRunnerOptions).parallelism == 3
        local = ["--runner=DirectRunner"]
        assert use_cluster_parallelism(PipelineOptions(local), local) is None
    finally:
        server.shutdown()
    gone = ["--runner=FlinkRunner", f"--flink_master={master}"]  # nothing answers there now
    options = PipelineOptions(gone)
    assert use_cluster_parallelism(options, gone) is None
    assert options.view_as(FlinkRunnerOptions).parallelism == -1
    assert "could not ask the Flink cluster" in caplog.text and "--parallelism=N" in caplog.text
