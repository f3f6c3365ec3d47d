"""The card's own command on real engines: `--runner=FlinkRunner` and `--runner=SparkRunner` against a
Flink session cluster and a Spark standalone cluster on localhost (launch/local_cluster.py: what
`make flink-up` / `make spark-up` run), with Beam's job servers built from Maven (`make job-servers`).

Same records as DirectRunner on every engine and environment, term chunks of a glossary (`--glossary`)
and their audio in the shards included; a rerun with --resume adds nothing; a
TaskManager or an SDK worker killed mid-job loses no record and writes none twice (the job restarted by
Flink finishes, or it fails loudly and --resume finishes it).

The clusters start once per test session (per file), with Beam's job servers beside them (what `make flink-up`
runs); most jobs go to those (`--job_endpoint`), and the card's plain command, which starts its own
job-server JVM, runs too (flink-loopback). Under `pytest -n`
every test of this file runs on one worker, beside the rest of the suite (conftest's scheduler)."""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import speechgen
from asr_distill.processes import alive, children_by_parent, subtree, tcp_connected
from asr_distill.shards import parse_byte_range
from conftest import read_jsonl, wait_for_committed_texts, write_index

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "launch"))
import local_cluster  # noqa: E402

FLINK = ["--runner=FlinkRunner", "--flink_master=localhost:8081"]
SPARK = ["--runner=SparkRunner", "--spark_master_url=spark://localhost:7077"]
FLINK_EXTERNAL = ["--environment_type=EXTERNAL", "--environment_config=localhost:50000"]
SPARK_EXTERNAL = ["--environment_type=EXTERNAL", "--environment_config=localhost:50001"]
JOB_SERVER = {name: [f"--job_endpoint=localhost:{port}"] for name, port in local_cluster.JOB_SERVERS.items()}
ENGINES = {
    "flink-external": FLINK + JOB_SERVER["flink"] + FLINK_EXTERNAL,
    "flink-loopback": FLINK + ["--environment_type=LOOPBACK"],  # the card's command: its own job server
    "spark-external": SPARK + JOB_SERVER["spark"] + SPARK_EXTERNAL,
}


def _cluster(name: str, up):
    up()  # with Beam's job server beside it, built from Maven the first time
    yield local_cluster
    pids = list(local_cluster._pids(name).values())
    local_cluster.down(name)
    assert not [p for p in pids if alive(p)], f"a {name} cluster process outlived {name}-down"


# Module-scoped: a cluster goes down as soon as its worker moves on to other files (its JVMs no longer
# take CPU from them); the tests of one cluster run one after another (conftest's scheduler).
@pytest.fixture(scope="module")
def flink():
    yield from _cluster("flink", local_cluster.flink_up)


@pytest.fixture(scope="module")
def spark():
    yield from _cluster("spark", local_cluster.spark_up)


@contextlib.contextmanager
def _made_once(tmp_path_factory, name: str):
    """A folder shared by every pytest-xdist worker of the session, held under a lock: the Flink and the
    Spark tests run on two workers and compare with the same inputs and DirectRunner output (a whole
    DirectRunner job each before)."""
    root = tmp_path_factory.getbasetemp()
    folder = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / name
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


@pytest.fixture(scope="module")
def index(tmp_path_factory, broken_files):
    """The demo audio and a few bad rows: a missing file, a text file, a duplicate key, a line that is
    not JSON, a row without uri."""
    with _made_once(tmp_path_factory, "runners-input") as folder:
        if not (folder / "index.jsonl").exists():
            for kind in ("text", "garbage"):
                shutil.copy(broken_files[kind], folder / broken_files[kind].name)
            rows = [dict(json.loads(line), uri=str(ROOT / "launch" / "demo" / json.loads(line)["uri"]))
                    for line in (ROOT / "launch" / "demo" / "index.jsonl").read_text().splitlines()]
            rows += [{"key": "gone", "uri": str(folder / "no_such_file.wav")},
                     {"key": "notes", "uri": str(folder / broken_files["text"].name)},
                     {"key": "demo/weather", "uri": str(folder / broken_files["garbage"].name)},
                     '{"key": "half a line"', {"key": "no-uri"}]
            write_index(folder / "index.jsonl", rows)
    return folder / "index.jsonl"


@pytest.fixture(scope="module")
def glossary(tmp_path_factory):
    """Words the demo files say (one under another spelling) and one they never say."""
    path = tmp_path_factory.mktemp("runners-glossary") / "glossary.json"
    path.write_text(json.dumps({"terms": ["notebook", "tomatoes", "football", "exhibition", "valley", "harbour",
                                          "saxophone"], "alt2main": {"harbor": "harbour"}}))
    return path


def _cli(*args, timeout=900):
    out = subprocess.run([sys.executable, "-m", "beam_pipeline", "--quiet", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def _records(out: Path) -> dict:
    """Every output record; a term chunk with the audio its shard holds for it in place of its uri (shard
    files are named by their contents, which follow the runner's bundles)."""
    records = {kind: sorted(json.dumps(r, sort_keys=True) for r in read_jsonl(out, kind))
               for kind in ("transcripts", "failures", "filtered")}
    chunks = []
    for r in read_jsonl(out, "term_chunks"):
        where = parse_byte_range(r.pop("uri"))
        with open(out / where.path, "rb") as f:
            f.seek(where.offset)
            r["audio_sha256"] = hashlib.sha256(f.read(where.length)).hexdigest()
        chunks.append(json.dumps(r, sort_keys=True))
    records["term_chunks"] = sorted(chunks)
    return records


@pytest.fixture(scope="module")
def direct(index, glossary, tmp_path_factory):
    with _made_once(tmp_path_factory, "runners-direct") as folder:
        out = folder / "out"
        if not (out / "run.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            rc, stdout, stderr = _cli(f"--input_index={index}", f"--output={out}", f"--glossary={glossary}")
            assert rc == 0, stderr
        return {"records": _records(out), "run": json.loads((out / "run.json").read_text())}


def _finished_jobs(engine: str) -> int:
    if engine.startswith("flink"):
        jobs = local_cluster._http_json("http://localhost:8081/jobs/overview")["jobs"]
        return sum(j["state"] == "FINISHED" for j in jobs)
    apps = local_cluster._http_json("http://localhost:8080/json/")["completedapps"]
    return sum(a["state"] == "FINISHED" for a in apps)


def _own_job_servers() -> set:
    """Beam's job-server JVMs that a command started for itself (their artifacts in a temp folder)."""
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
            if b"job-server" in cmd and b"beam-temp" in cmd and alive(int(entry.name)):
                found.add(int(entry.name))
    return found


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_engine_writes_direct_runners_records(request, index, glossary, direct, tmp_path, engine):
    request.getfixturevalue(engine.split("-")[0])  # its cluster, up
    before = _finished_jobs(engine)
    out = tmp_path / "out"
    job_servers = _own_job_servers()
    rc, stdout, stderr = _cli(f"--input_index={index}", f"--output={out}", f"--glossary={glossary}", *ENGINES[engine])
    assert rc == 0, stderr[-3000:]
    assert _own_job_servers() <= job_servers  # a job server the command started ended with it
    if engine == "spark-external":  # shuffles partitioned by the worker's cores (spark_up's 2 here), not by
        # what Spark knows before its executors register (2 too here; 2 on a 16-core GPU node as well)
        cmd = Path(f"/proc/{local_cluster._pids('spark')['job_server']}/cmdline").read_bytes().split(b"\0")
        assert b"-Dspark.default.parallelism=2" in cmd
    assert _finished_jobs(engine) == before + 1  # the engine's own API: the job ran there and FINISHED
    assert _records(out) == direct["records"]
    run, ref = json.loads((out / "run.json").read_text()), direct["run"]
    assert run["reconciled"] and run["segments_reconciled"]
    assert run["counts"] == ref["counts"] and run["segment_accounting"] == ref["segment_accounting"]
    assert run["audio_s"] == ref["audio_s"] and run["runner"] == ENGINES[engine][0].split("=")[1]
    # every counter that DirectRunner reports, this runner reports too, with the same value (but the
    # number of segment-text commits, which follows the runner's bundles, and the CPU time each process
    # reported for the run's cost)
    # (and the time alignment took and the shards term chunks went to, which follow the bundles too)
    varies = {("write", "commits"), ("terms", "align_ms"), ("terms", "shards")}
    ours = {ns: {k: v for k, v in names.items() if (ns, k) not in varies}
            for ns, names in ref["metrics"].items() if ns != "cost"}
    assert run["metrics"]["cost"]["cpu_ms"] > 0 and run["cost"]["cpu_core_s"] > 0
    assert {ns: {k: run["metrics"][ns].get(k) for k in names} for ns, names in ours.items()} == ours
    assert len(direct["records"]["transcripts"]) == 3
    # the terms the demo says, each a chunk (its audio the same bytes as DirectRunner's), and the one it never says
    terms = [json.loads(r)["term"] for r in direct["records"]["term_chunks"]]
    assert {"notebook", "tomatoes", "football", "exhibition", "valley", "harbour"} <= set(terms)
    assert run["terms"]["never_heard"] == {"count": 1, "terms": ["saxophone"]} and run["terms"]["reconciled"]
    timing = ("align_s", "segments_per_align_s")  # this machine's speed, not the runner's result
    assert {k: v for k, v in run["terms"].items() if k not in timing} == \
        {k: v for k, v in ref["terms"].items() if k not in timing}
    if engine.endswith("external"):
        rc, stdout, stderr = _cli(f"--input_index={index}", f"--output={out}", f"--glossary={glossary}", "--resume",
                                  *ENGINES[engine])
        assert rc == 0, stderr[-3000:]
        assert _records(out) == direct["records"]  # nothing twice, nothing lost
        resumed = json.loads((out / "run.json").read_text())
        # the three done keys' rows (demo/weather has two) are skipped; the failed rows are tried again
        assert resumed["resume"]["rows_skipped"] == 4 and resumed["counts"]["transcripts"] == 0
        assert resumed["reconciled"]


def _killed_mid_job(tmp_path, long_forms, kill) -> tuple:
    rows = [{"key": f"{name}-{c}", "uri": str(t.path)} for c in range(1) for name, t in long_forms.items()]
    truth = {r["key"]: long_forms[r["key"].rsplit("-", 1)[0]].text for r in rows}
    index = write_index(tmp_path / "index.jsonl", rows)
    cfg = tmp_path / "commit.yaml"
    cfg.write_text("writer:\n  commit_every_records: 1\ninference:\n  beam_size: 1\n")  # greedy: what is tested is the runner
    out = tmp_path / "out"
    args = [f"--input_index={index}", f"--output={out}", f"--config={cfg}", *ENGINES["flink-external"]]
    job = subprocess.Popen([sys.executable, "-m", "beam_pipeline", "--quiet", *args], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_committed_texts(job, out, timeout_s=600)
    assert job.poll() is None, "the job ended before anything could be killed: give it more audio"
    kill()
    _stdout, stderr = job.communicate(timeout=900)
    first_rc = job.returncode
    print(f"after the kill the job exited {first_rc}; Flink jobs: "
          f"{Counter(j['state'] for j in local_cluster._http_json('http://localhost:8081/jobs/overview')['jobs'])}")
    assert first_rc == 0 or "error: the FlinkRunner job failed" in stderr, stderr[-3000:]
    if first_rc != 0:  # the job failed loudly: --resume finishes it (after a restart that held, it is done)
        rc, _stdout, stderr = _cli(*args, "--resume")
        assert rc == 0, stderr[-3000:]
    transcripts = read_jsonl(out, "transcripts")
    assert Counter(t["key"] for t in transcripts) == Counter(list(truth))  # every key once: none lost, none twice
    assert read_jsonl(out, "failures") == [] and not (out / "_work").exists()
    for t in transcripts:
        assert t["status"] == "ok" and speechgen.word_error_rate(truth[t["key"]], t["text"]) <= 0.15
    return first_rc, json.loads((out / "run.json").read_text())


def test_a_taskmanager_killed_mid_job(flink, tmp_path, long_forms):
    """SIGKILL the TaskManager, start another (as Kubernetes would): Flink's restart strategy runs the
    job again, or it fails loudly; after --resume every key is there exactly once."""
    def kill():
        os.kill(local_cluster._pids("flink")["taskmanager"], signal.SIGKILL)
        time.sleep(2)
        local_cluster.flink_taskmanager()

    first_rc, run = _killed_mid_job(tmp_path, long_forms, kill)
    assert run["reconciled"] and run["segments_reconciled"]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_an_sdk_worker_killed_mid_job(flink, tmp_path, long_forms):
    def kill():
        pool = local_cluster._pids("flink")["worker_pool"]
        deadline = time.monotonic() + 60
        # the pool forks each SDK worker from its forkserver, named beam-sdk-worker; kill one that is
        # working for the job (connected to the runner), not one forked a moment ago: a worker that dies
        # before it connects leaves Flink waiting for it without end (Beam's ExternalEnvironmentFactory)
        while True:
            below = subtree(pool, children_by_parent())[1:]
            workers = [p for p in below if _comm(p) == "beam-sdk-worker" and tcp_connected(p)]
            if workers or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert workers, f"no SDK worker process under the worker pool: {[_cmdline(p)[:120] for p in below]}"
        os.kill(workers[0], signal.SIGKILL)

    first_rc, run = _killed_mid_job(tmp_path, long_forms, kill)
    assert run["reconciled"] and run["segments_reconciled"]


def test_without_java_or_a_job_server_the_cli_says_what_to_do(tmp_path, monkeypatch, short_speech_wav):
    """No cluster needed: the command stops at once with the one step that fixes it."""
    index = write_index(tmp_path / "i.jsonl", [{"key": "short", "uri": str(short_speech_wav[0])}])
    monkeypatch.setenv("ASR_DISTILL_CLUSTER_CACHE", str(tmp_path / "empty-cache"))
    rc, _out, stderr = _cli(f"--input_index={index}", f"--output={tmp_path / 'o'}", *FLINK)
    assert rc == 2 and "run `make job-servers`" in stderr and "--flink_job_server_jar" in stderr
    assert "Traceback" not in stderr
    rc, _out, stderr = _cli(f"--input_index={index}", f"--output={tmp_path / 'o'}", *SPARK)
    assert rc == 2 and "--spark_job_server_jar" in stderr
    with socket.socket() as s:  # a port nothing listens on: Beam alone would wait 300 s on it
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    rc, _out, stderr = _cli(f"--input_index={index}", f"--output={tmp_path / 'o'}", "--runner=PortableRunner",
                            f"--job_endpoint=localhost:{port}")
    assert rc == 2 and f"nothing answers at --job_endpoint=localhost:{port}" in stderr and "make flink-up" in stderr
    assert time.monotonic() - started < 60
    bare = tmp_path / "bin"  # a PATH with python and no java
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bare))
    rc, _out, stderr = _cli(f"--input_index={index}", f"--output={tmp_path / 'o'}", *FLINK)
    assert rc == 2 and "no `java` on PATH" in stderr and "openjdk-17" in stderr
    assert not (tmp_path / "o").exists()  # nothing was started, nothing written
