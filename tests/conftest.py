"""Fixtures the suite makes itself: speech from espeak-ng, containers from ffmpeg, broken files."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import speechgen

# Every JVM the suite starts (Flink, Spark, Beam's job servers) lives for minutes on tiny jobs: the
# client compiler alone starts them with about half the CPU (measured: a first Flink job 59 CPU-s
# against 131, a job with its own job server 59 against 92), and the suite is CPU-bound on 2 cores.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

# The long-form files of the end-to-end tests: > 30 s each, pauses short and long.
LONG_FORM = {
    "talk_mp3": ("mp3", speechgen.SENTENCES[0:8], [0.6, 1.6, 3.2]),
    "talk_flac": ("flac", speechgen.SENTENCES[8:16], [2.4, 0.7, 1.2]),
    "talk_mp4": ("mp4", speechgen.SENTENCES[16:24], [1.0, 3.0, 0.5]),
}


@dataclass
class LongForm:
    key: str
    path: Path
    text: str
    utterances: list


def _need_tools():
    missing = speechgen.missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH to generate test media "
                    "(`make test` installs them with apt-get)")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    _need_tools()
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def long_forms(media_dir) -> dict[str, LongForm]:
    out = {}
    for key, (ext, sentences, pauses) in LONG_FORM.items():
        wav = media_dir / f"{key}.wav"
        truth = speechgen.long_form(wav, sentences, pauses)
        path = speechgen.encode(wav, media_dir / f"{key}.{ext}")
        wav.unlink()
        out[key] = LongForm(key, path, " ".join(u.text for u in truth), truth)
    return out


@pytest.fixture(scope="session")
def short_speech_wav(media_dir) -> tuple[Path, list]:
    """Two sentences, about 8 s, as a plain 22.05 kHz WAV: the reference for container tests."""
    wav = media_dir / "short.wav"
    truth = speechgen.long_form(wav, speechgen.SENTENCES[:2], [0.8])
    return wav, truth


@pytest.fixture(scope="session")
def silence_file(media_dir) -> Path:
    path = media_dir / "silence.wav"
    rng = np.random.default_rng(0)
    speechgen.write_wav(path, (rng.normal(0, 3, 16000 * 8)).astype(np.int16), 16000)
    return path


@pytest.fixture(scope="session")
def broken_files(media_dir) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    garbage = media_dir / "garbage.mp3"
    garbage.write_bytes(rng.integers(0, 256, 40000, dtype=np.uint8).tobytes())
    text = media_dir / "notes.wav"
    text.write_text("this is not audio at all\n" * 50)
    empty = media_dir / "empty.flac"
    empty.write_bytes(b"")
    return {"garbage": garbage, "text": text, "empty": empty}


def write_index(path: Path, rows: list[dict]) -> Path:
    with open(path, "w") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def wait_for_committed_texts(job, out: Path, count: int = 2, timeout_s: float = 300) -> None:
    """Until a running job has committed `count` segment-text files (something to resume from) or ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and job.poll() is None:
        if len(list((out / "_work").glob("texts-*.jsonl"))) >= count:
            return
        time.sleep(0.2)


def read_jsonl(pattern_dir: Path, kind: str) -> list[dict]:
    records = []
    for p in sorted(pattern_dir.glob(f"{kind}-*.jsonl")):
        records += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return records


@pytest.fixture(autouse=True, scope="session")
def _quiet_env():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Under `pytest -n N` (pytest-xdist), the tests of test_runners.py that use the Spark cluster run on
# one worker and the rest of that file (the Flink cluster) on one worker: each cluster (fixed ports,
# started once a session) is used by one process. Every other file's tests run together on one worker,
# so a module's fixtures (pipeline runs on long-form speech) are made once, not once per worker.
# (xdist's own `--dist loadgroup` marks are ignored under pytest 9: it renames nodeids through an
# attribute pytest 9 no longer reads.)
ON_THE_CLUSTERS = "tests/test_runners.py::"


# The files that take longest after the clusters' (minutes of one worker each, measured 2026-12-06),
# started early too, so that short files fill in at the end instead of a long one running alone.
LONG_FILES = ("tests/test_engine_server.py", "tests/test_pipeline.py", "tests/test_resume.py",
              "tests/test_report.py", "tests/test_retrieval.py")


def pytest_collection_modifyitems(items):
    """The cluster tests first: under `-n`, the two longest chains of the suite start at once, and the
    short tests fill in beside them (else the Flink chain, started halfway, is the suite's tail)."""
    def rank(item) -> int:
        if item.nodeid.startswith(ON_THE_CLUSTERS):
            return 0
        path = item.nodeid.split("::", 1)[0]
        return 1 + LONG_FILES.index(path) if path in LONG_FILES else 1 + len(LONG_FILES)

    items.sort(key=rank)  # a stable sort: within a file, the order it was written in


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerPerCluster(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if not nodeid.startswith(ON_THE_CLUSTERS):
                return nodeid.split("::", 1)[0]
            return "spark" if "spark" in nodeid else "flink"

    return OneWorkerPerCluster(config, log)

