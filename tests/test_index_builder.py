"""python -m beam_pipeline.index: a tree of media and other files -> an index the pipeline reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import speechgen
from beam_pipeline import run
from beam_pipeline.index import run as build_index
from conftest import read_jsonl


@pytest.fixture(scope="module")
def tree(tmp_path_factory, short_speech_wav, media_dir):
    root = tmp_path_factory.mktemp("tree") / "corpus"
    (root / "sub dir" / "ünï").mkdir(parents=True)
    (root / ".cache").mkdir()
    wav = short_speech_wav[0]
    (root / "a.wav").write_bytes(wav.read_bytes())
    speechgen.encode(wav, root / "sub dir" / "b c.mp3")
    speechgen.encode(wav, root / "sub dir" / "ünï" / "clip é.opus")
    speechgen.encode(wav, root / "video.mp4")
    (root / "notes.txt").write_text("not media")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    (root / "fake.mp3").write_text("an mp3 in name only")
    (root / ".cache" / "x.wav").write_bytes(wav.read_bytes())  # hidden: left out
    return root


def test_index_builder_keeps_media_by_extension_and_signature(tree, tmp_path):
    out = tmp_path / "index.parquet"
    summary = build_index([str(tree), "--output", str(out), "--probe"])
    rows = {r["key"]: r for r in pq.read_table(out).to_pylist()}
    assert sorted(rows) == ["a", "sub dir/b c", "sub dir/ünï/clip é", "video"]
    for key, row in rows.items():
        assert os.path.getsize(row["uri"]) == row["size_bytes"] and Path(row["uri"]).is_relative_to(tree)
        assert abs(row["duration_s"] - 8.0) < 1.0, row
    assert {k: (r["codec"], r["sample_rate"], r["channels"]) for k, r in rows.items()} == {
        "a": ("pcm_s16le", 22050, 1), "sub dir/b c": ("mp3", 44100, 2),
        "sub dir/ünï/clip é": ("opus", 48000, 1), "video": ("aac", 22050, 1)}
    [rejected] = [json.loads(line) for line in (tmp_path / "index.failures.jsonl").read_text().splitlines()]
    assert (rejected["key"], rejected["stage"], rejected["error_type"]) == ("fake", "index", "NotMediaError")
    # .cache/ is hidden: never listed; notes.txt and cover.jpg are not media by name.
    assert summary == {**summary, "files_listed": 7, "media_files": 4, "not_media": 2, "rejected": 1}


def test_the_pipeline_runs_on_a_built_jsonl_index(tree, tmp_path):
    index = tmp_path / "index.jsonl"
    cli = subprocess.run([sys.executable, "-m", "beam_pipeline.index", str(tree), "--output", str(index)],
                         capture_output=True, text=True)
    assert cli.returncode == 0 and "4 media files indexed" in cli.stdout, cli.stderr
    assert "WARNING" not in cli.stderr
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == ["a", "sub dir/b c", "sub dir/ünï/clip é", "video"]
    assert "duration_s" not in rows[0]
    record = run([f"--input_index={index}", f"--output={tmp_path / 'o'}", "--stop_after=segment"])
    assert record["reconciled"] and record["counts"]["failures"] == 0
    assert {s["key"] for s in read_jsonl(tmp_path / "o", "segments")} == {r["key"] for r in rows}


def test_index_builder_refuses_a_missing_root(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "beam_pipeline.index", str(tmp_path / "nope"), "--output",
                          str(tmp_path / "i.parquet")], capture_output=True, text=True)
    assert cli.returncode == 2 and "does not exist" in cli.stderr
