"""Bad input from the wild, all in one job: it completes, and every index row lands in exactly one place."""

import json
import subprocess
from collections import Counter

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

import speechgen
from beam_pipeline import run
from conftest import read_jsonl, write_index

SECRET = "s3cr3t-Signature-value"
PASSWORD = "hunter2pw"

# key -> (where it must end, stage, error_type); "ok"/"no_speech" are transcript statuses.
EXPECTED = {
    "good": ("ok", None, None),
    "dup": ("ok", None, None),
    "quiet": ("no_speech", None, None),
    "lying-header": ("no_speech", None, None),
    "unicode name": ("ok", None, None),
    "no-uri": ("failure", "index", "IndexRowError"),
    "bad-meta": ("failure", "index", "IndexRowError"),
    "bad-duration": ("failure", "index", "IndexRowError"),
    "missing": ("failure", "read", "OpenError"),
    "directory": ("failure", "read", "OpenError"),
    "broken-link": ("failure", "read", "OpenError"),
    "unknown-scheme": ("failure", "read", "OpenError"),
    "with-credentials": ("failure", "read", "OpenError"),
    "too-big": ("failure", "read", "FileTooLargeError"),
    "empty-file": ("failure", "decode", "EmptyAudioError"),
    "garbage": ("failure", "decode", "DecodeError"),
    "text-as-wav": ("failure", "decode", "DecodeError"),
    "video-only": ("failure", "decode", "NoAudioStreamError"),
    "zero-samples": ("failure", "decode", "EmptyAudioError"),
    "one-sample": ("failure", "decode", "TooShortError"),
    "nan-samples": ("failure", "decode", "NonFiniteAudioError"),
    "inf-samples": ("failure", "decode", "NonFiniteAudioError"),
    "rate-1hz": ("failure", "decode", "BadHeaderError"),
    "rate-absurd": ("failure", "decode", "BadHeaderError"),
    "no-channels": ("failure", "decode", "BadHeaderError"),
    "too-long": ("failure", "decode", "TooLongError"),
}
MESSAGES = {
    "missing": "No such file or directory",
    "directory": "Is a directory",
    "unknown-scheme": "no file system is registered for nosuch://",
    "too-big": "more than max_size_bytes=1000000",
    "video-only": "no audio stream (streams: video)",
    "one-sample": "shorter than one VAD window",
    "nan-samples": "NaN or infinite",
    "rate-1hz": "sample rate 1 Hz",
    "too-long": "header says 12 s of audio, more than max_duration_s=10",
    "no-uri": "row has no 'uri'",
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, media_dir, short_speech_wav, silence_file, broken_files):
    d = tmp_path_factory.mktemp("bad")
    wav, _ = short_speech_wav
    rng = np.random.default_rng(7)
    noise = lambda seconds, rate=16000: (rng.normal(0, 3, int(seconds * rate))).astype(np.int16)  # noqa: E731
    raw = speechgen.write_raw_wav
    (d / "a folder.wav").mkdir()
    (d / "broken-link.wav").symlink_to(d / "nowhere.wav")
    unicode_dir = d / "voilà spaces"
    unicode_dir.mkdir()
    (unicode_dir / "ünï cödé.wav").write_bytes(wav.read_bytes())
    video = d / "video-only.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=black:s=32x32:d=1", "-an",
                    "-c:v", "mpeg4", str(video)], check=True)
    files = {
        "good": wav,
        "quiet": silence_file,
        "lying-header": raw(d / "lying.wav", noise(1), 16000, declared_data_bytes=0x7FFFFFF0),
        "zero-samples": raw(d / "zero.wav", np.zeros(0, np.int16), 16000),
        "one-sample": raw(d / "one.wav", np.array([1000], np.int16), 16000),
        "nan-samples": raw(d / "nan.wav", np.r_[np.zeros(8000), np.nan, np.zeros(8000)].astype(np.float32), 16000),
        "inf-samples": raw(d / "inf.wav", np.r_[np.zeros(8000), -np.inf].astype(np.float32), 44100),
        "rate-1hz": raw(d / "rate1.wav", noise(1), 1),
        "rate-absurd": raw(d / "rate_huge.wav", noise(1), 2_000_000_000),
        "no-channels": raw(d / "ch0.wav", noise(1), 16000, channels=0),
        "too-long": raw(d / "long.wav", noise(12), 16000),
        "too-big": raw(d / "big.wav", noise(60, 16000), 16000),  # 1.9 MB, but it would pass the header check
        "empty-file": broken_files["empty"],
        "garbage": broken_files["garbage"],
        "text-as-wav": broken_files["text"],
        "video-only": video,
        "missing": d / "not-there.wav",
        "directory": d / "a folder.wav",
        "broken-link": d / "broken-link.wav",
    }
    rows = [{"key": k, "uri": str(p)} for k, p in files.items()]
    rows += [
        {"key": "dup", "uri": str(wav)},
        {"key": "dup", "uri": str(silence_file)},   # a later row with the same key: a duplicate
        {"key": "dup", "uri": str(d / "not-there.wav")},
        {"key": "unicode name", "uri": "voilà spaces/ünï cödé.wav"},  # relative to the index
        {"key": "unknown-scheme", "uri": "nosuch://bucket/a.wav"},
        {"key": "with-credentials", "uri": f"https://user:{PASSWORD}@example.invalid/a.wav?Signature={SECRET}"},
        {"key": "no-uri"},
        {"key": "bad-meta", "uri": str(wav), "meta": 3},
        {"key": "bad-duration", "uri": str(wav), "duration_s": "long"},
        '{"key": "unterminated", "uri": ',
        "[1, 2, 3]",
        "",  # blank lines are not rows
    ]
    index = write_index(d / "index.jsonl", rows)
    cfg = d / "guards.yaml"
    cfg.write_text("audio:\n  max_duration_s: 10\n  max_size_bytes: 1000000\n")
    out = d / "out"
    record = run([f"--input_index={index}", f"--output={out}", f"--config={cfg}"], test_pipeline=BeamTestPipeline())
    return {"out": out, "record": record, "rows": len([r for r in rows if r != ""]),
            "transcripts": read_jsonl(out, "transcripts"), "failures": read_jsonl(out, "failures")}


def test_every_row_lands_in_exactly_one_place(bad_run):
    transcripts, failures = bad_run["transcripts"], bad_run["failures"]
    assert len(EXPECTED) + 4 >= 25  # at least 15 distinct kinds of bad input, and the good ones beside them
    assert len(transcripts) + len(failures) == bad_run["rows"]
    assert Counter(t["key"] for t in transcripts) == Counter(k for k, (w, _, _) in EXPECTED.items() if w != "failure")
    got = {}
    for t in transcripts:
        got[t["key"]] = (t["status"], None, None)
    keyed_failures = [f for f in failures if f["key"] is not None]
    for f in keyed_failures:
        if f["key"] != "dup":
            assert f["key"] not in got, f"{f['key']} ended in two places"
            got[f["key"]] = ("failure", f["stage"], f["error_type"])
    assert got == EXPECTED
    # the two later 'dup' rows, and the two lines that are not JSON objects
    dups = [f for f in failures if f["key"] == "dup"]
    assert [(f["stage"], f["error_type"]) for f in dups] == [("index", "DuplicateKey")] * 2
    assert all("the first one" in f["message"] and "byte" in f["message"] for f in dups)
    assert sorted(f["message"].split(" (")[0] for f in failures if f["key"] is None) == [
        "line is a JSON list, not an object", "line is not valid JSON: Expecting value at column 31"]


def test_messages_are_clear_and_hold_no_traceback_or_secret(bad_run):
    by_key = {f["key"]: f for f in bad_run["failures"] if f["key"] != "dup"}
    for key, fragment in MESSAGES.items():
        assert fragment in by_key[key]["message"], key
    for f in bad_run["failures"]:
        assert "Traceback" not in f["message"] and 'File "' not in f["message"]
    out = bad_run["out"]
    everything = "".join(p.read_text() for p in out.iterdir() if p.is_file())
    assert SECRET not in everything and PASSWORD not in everything
    assert by_key["with-credentials"]["uri"] == "https://***@example.invalid/a.wav?Signature=***"


def test_run_json_counts_failures_per_stage_and_type(bad_run):
    record = json.loads((bad_run["out"] / "run.json").read_text())
    counts = record["counts"]
    assert record["reconciled"] is True
    assert counts["index_rows"] == bad_run["rows"]
    assert counts["transcripts"] + counts["failures"] == bad_run["rows"]
    assert counts["failures_by_stage"] == {"index": 7, "read": 6, "decode": 12}
    assert counts["failures_by_type"]["decode:BadHeaderError"] == 3
    assert counts["failures_by_type"]["index:DuplicateKey"] == 2
    assert counts["failures_by_type"]["decode:NonFiniteAudioError"] == 2
