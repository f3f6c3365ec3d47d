"""Resume: a killed job keeps what it committed, and --resume finishes it with every key exactly once."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

import speechgen
from beam_pipeline import run
from beam_pipeline.pipeline import UsageError
from conftest import read_jsonl, wait_for_committed_texts, write_index


def _run(index, out, *extra):
    return run([f"--input_index={index}", f"--output={out}", *extra], test_pipeline=BeamTestPipeline())


def test_resume_processes_only_new_rows_and_settles_old_failures(tmp_path, short_speech_wav, silence_file):
    wav, _ = short_speech_wav
    first = [{"key": "short", "uri": str(wav)}, {"key": "quiet", "uri": str(silence_file)},
             {"key": "late", "uri": str(tmp_path / "late.wav")}]  # not there yet: fails at read
    out = tmp_path / "o"
    _run(write_index(tmp_path / "a.jsonl", first), out)
    assert [f["key"] for f in read_jsonl(out, "failures")] == ["late"]

    # The missing file arrives, and the index grows by a row and a duplicate of a finished key.
    (tmp_path / "late.wav").write_bytes(wav.read_bytes())
    grown = first + [{"key": "again", "uri": str(wav)}, {"key": "quiet", "uri": str(wav)}]
    record = _run(write_index(tmp_path / "b.jsonl", grown), out, "--resume")
    # 'short' and both 'quiet' rows were done: skipped; 'late' is tried again (its old failure replaced).
    assert record["resume"] == {"resumed": True, "rows_skipped": 3, "segments_reused": 0,
                                "failures_carried": 0, "failures_replaced": 1,
                                "filtered_carried": 0, "filtered_replaced": 0}
    assert record["counts"]["transcripts"] == 2 and record["counts"]["segments_transcribed"] == 2
    assert record["reconciled"]
    transcripts = read_jsonl(out, "transcripts")
    assert Counter(t["key"] for t in transcripts) == Counter(["short", "quiet", "late", "again"])
    assert read_jsonl(out, "failures") == []
    assert not (out / "_work").exists()


def test_resume_can_leave_failed_keys_alone(tmp_path, short_speech_wav):
    wav, _ = short_speech_wav
    rows = [{"key": "short", "uri": str(wav)}, {"key": "late", "uri": str(tmp_path / "late.wav")},
            {"key": "short", "uri": str(tmp_path / "other.wav")}]
    index = write_index(tmp_path / "a.jsonl", rows)
    out = tmp_path / "o"
    _run(index, out)
    before = sorted(json.dumps(f, sort_keys=True) for f in read_jsonl(out, "failures"))
    (tmp_path / "late.wav").write_bytes(wav.read_bytes())
    record = _run(index, out, "--resume", "--skip_failed")
    # Nothing is processed; the failure records (a read failure and a duplicate) are carried, once each.
    assert record["resume"]["rows_skipped"] == 3 and record["resume"]["failures_carried"] == 2
    assert record["counts"]["transcripts"] == 0 and record["reconciled"]
    assert sorted(json.dumps(f, sort_keys=True) for f in read_jsonl(out, "failures")) == before
    assert [t["key"] for t in read_jsonl(out, "transcripts")] == ["short"]


def test_an_interrupted_output_needs_resume_and_the_same_config(tmp_path, short_speech_wav):
    wav, _ = short_speech_wav
    index = write_index(tmp_path / "a.jsonl", [{"key": "short", "uri": str(wav)}])
    out = tmp_path / "o"
    (out / "_work").mkdir(parents=True)
    (out / "_work" / "run.json").write_text(json.dumps({"work_digest": "from-another-config"}))
    with pytest.raises(UsageError, match="an interrupted run.*--resume"):
        _run(index, out)
    with pytest.raises(UsageError, match="config changed"):
        _run(index, out, "--resume")


def _count_lines(paths) -> int:
    return sum(len(p.read_text().splitlines()) for p in paths)


def test_a_killed_job_resumes_where_it_stopped(tmp_path, long_forms):
    """SIGKILL mid-inference, then --resume: nothing committed is redone, every key appears once."""
    rows = [{"key": f"{name}-{copy}", "uri": str(t.path)} for copy in range(2) for name, t in long_forms.items()]
    truth = {r["key"]: long_forms[r["key"].rsplit("-", 1)[0]].text for r in rows}
    index = write_index(tmp_path / "index.jsonl", rows)
    cfg = tmp_path / "commit.yaml"
    cfg.write_text("writer:\n  commit_every_records: 1\ninference:\n  beam_size: 1\n")  # greedy: resume is tested
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "beam_pipeline", f"--input_index={index}", f"--output={out}", f"--config={cfg}"]
    job = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_committed_texts(job, out)
    assert job.poll() is None, "the job ended before it could be killed: give it more audio"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    texts_before = {(r["key"], r["index"]) for p in (out / "_work").glob("texts-*.jsonl")
                    for r in map(json.loads, p.read_text().splitlines())}
    transcripts_before = read_jsonl(out, "transcripts")
    assert texts_before, "nothing was committed before the kill"
    assert not (out / "run.json").exists()

    record = run([f"--input_index={index}", f"--output={out}", f"--config={cfg}", "--resume"])
    resumed = record["resume"]
    counts = record["counts"]
    # Files whose transcript was committed are skipped; segments transcribed before the kill are reused.
    assert resumed["rows_skipped"] == len(transcripts_before)
    already = {t["key"] for t in transcripts_before}
    assert resumed["segments_reused"] == len({s for s in texts_before if s[0] not in already})
    assert counts["segments_transcribed"] + resumed["segments_reused"] == counts["segments"]
    assert record["reconciled"]
    transcripts = read_jsonl(out, "transcripts")
    assert Counter(t["key"] for t in transcripts) == Counter(list(truth))
    assert read_jsonl(out, "failures") == []
    for t in transcripts:
        assert t["status"] == "ok"
        assert speechgen.word_error_rate(truth[t["key"]], t["text"]) <= 0.15, t["key"]
    # the finished directory has the shape of an uninterrupted run
    assert not (out / "_work").exists()
    assert {p.name.split("-")[0] for p in out.iterdir()} == {"transcripts", "run.json"}
