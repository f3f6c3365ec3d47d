"""Portability: the same job through Beam's portable runner, with SDK workers in an EXTERNAL worker pool
(what Flink and Spark clusters run beside their task managers), gives DirectRunner's output exactly."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from beam_pipeline import run
from conftest import read_jsonl, write_index


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker_pool(tmp_path):
    port = _free_port()
    # The pool starts SDK workers with `python` from PATH: the venv's must come first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    pool = subprocess.Popen([sys.executable, "-m", "beam_pipeline.worker_pool",
                             f"--service_port={port}"], env=env, cwd=tmp_path,
                            stdout=open(tmp_path / "pool.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                break
        time.sleep(0.2)
    else:
        pool.kill()
        pytest.fail("the worker pool did not start listening")
    yield f"localhost:{port}"
    pool.kill()
    pool.wait()


def _records(out: Path):
    transcripts = sorted(read_jsonl(out, "transcripts"), key=lambda t: t["key"])
    failures = sorted(read_jsonl(out, "failures"), key=lambda f: (f["key"] or "", f["stage"]))
    return transcripts, failures


def test_portable_runner_with_external_workers_matches_direct(tmp_path, long_forms, short_speech_wav,
                                                              silence_file, worker_pool):
    wav, _ = short_speech_wav
    index = write_index(tmp_path / "index.jsonl", [
        {"key": "talk", "uri": str(long_forms["talk_flac"].path), "meta": {"speaker": "a"}},
        {"key": "short", "uri": str(wav)},
        {"key": "quiet", "uri": str(silence_file)},
        {"key": "gone", "uri": str(tmp_path / "gone.wav")},
    ])
    direct = tmp_path / "direct"
    run([f"--input_index={index}", f"--output={direct}"], test_pipeline=BeamTestPipeline())

    portable = tmp_path / "portable"
    # Relative paths, from a directory that is not the workers' (a relative index once read 0 rows there)
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipeline", f"--input_index={tmp_path.name}/{index.name}",
         f"--output={tmp_path.name}/portable", "--runner=PortableRunner", "--job_endpoint=embed",
         "--environment_type=EXTERNAL", f"--environment_config={worker_pool}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr[-3000:]

    want, got = _records(direct), _records(portable)
    assert [t["key"] for t in got[0]] == ["quiet", "short", "talk"]
    assert got == want  # text, segment times, quality signals, failures: all identical
    record = json.loads((portable / "run.json").read_text())
    assert record["runner"] == "PortableRunner" and record["reconciled"]
    assert record["environment"] == {"kind": "portable", "environment_type": "EXTERNAL",
                                     "job_endpoint": "embed", "environment_config": worker_pool,
                                     "sdk_worker_parallelism": 1}
    assert record["counts"]["transcripts"] == 3 and record["counts"]["failures"] == 1

