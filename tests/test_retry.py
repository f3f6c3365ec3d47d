"""Retries: the backoff itself, which errors count as transient, and the pipeline on a flaky file system."""

import errno

import pytest
from apache_beam.io.filesystem import BeamIOError
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill.retry import RetryPolicy, is_transient, retry_call
from beam_pipeline import run
from conftest import read_jsonl, write_index
from flaky_fs import FlakyFileSystem, flaky


class Flaky:
    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_transient_errors_are_retried_with_capped_exponential_backoff():
    slept = []
    fn = Flaky([TimeoutError()] * 5)
    policy = RetryPolicy(attempts=6, base_delay_s=1.0, max_delay_s=4.0)
    assert retry_call(fn, policy, "test", sleep=slept.append) == "done"
    assert fn.calls == 6
    # 1, 2, 4, 4, 4 seconds, each within +-25% jitter
    for got, want in zip(slept, [1, 2, 4, 4, 4]):
        assert 0.75 * want <= got <= 1.25 * want


def test_permanent_errors_are_not_retried():
    slept = []
    fn = Flaky([FileNotFoundError(errno.ENOENT, "No such file")])
    with pytest.raises(FileNotFoundError):
        retry_call(fn, RetryPolicy(), "test", sleep=slept.append)
    assert fn.calls == 1 and slept == []


def test_gives_up_after_the_last_attempt():
    fn = Flaky([ConnectionResetError()] * 10)
    with pytest.raises(ConnectionResetError):
        retry_call(fn, RetryPolicy(attempts=3), "test", sleep=lambda s: None)
    assert fn.calls == 3


@pytest.mark.parametrize("err, transient", [
    (TimeoutError(), True),
    (ConnectionResetError(), True),
    (OSError(errno.ETIMEDOUT, "timed out"), True),
    (BeamIOError("Rename operation failed", {("a", "b"): ConnectionResetError()}), True),
    (BeamIOError("Open failed", {"a": FileNotFoundError()}), False),
    (PermissionError(), False),
    (IsADirectoryError(), False),
    (ValueError("bad"), False),
])
def test_which_errors_are_transient(err, transient):
    assert is_transient(err) is transient


@pytest.fixture
def fast_retries(tmp_path):
    cfg = tmp_path / "retry.yaml"
    cfg.write_text("data:\n  io_attempts: 3\n  io_retry_base_s: 0.01\n  io_retry_max_s: 0.02\n"
                   "writer:\n  commit_every_records: 1\n")
    FlakyFileSystem.reset()
    yield cfg
    FlakyFileSystem.reset()


def test_pipeline_retries_flaky_reads_and_writes(tmp_path, short_speech_wav, silence_file, fast_retries):
    wav, _ = short_speech_wav
    FlakyFileSystem.reset({
        ("open", str(wav)): 2,             # two timeouts, then it opens
        ("read", str(silence_file)): 1,    # the connection drops after 4 KiB, once
        ("open", "missing.wav"): 5,        # never there: would time out, but is not found first
        ("create", "transcripts-"): 1,     # committing output: the store resets once...
        ("rename", "failures-"): 1,        # ...and once more when renaming into place
    })
    index = write_index(tmp_path / "i.jsonl", [
        {"key": "short", "uri": flaky(wav)},
        {"key": "quiet", "uri": flaky(silence_file)},
        {"key": "missing", "uri": flaky(tmp_path / "nothing_here.wav")},
    ])
    out = tmp_path / "o"
    record = run([f"--input_index={index}", f"--output={flaky(out)}", f"--config={fast_retries}"],
                 test_pipeline=BeamTestPipeline())
    transcripts = {t["key"]: t for t in read_jsonl(out, "transcripts")}
    assert {k: t["status"] for k, t in transcripts.items()} == {"short": "ok", "quiet": "no_speech"}
    assert "weather today is sunny" in transcripts["short"]["text"].lower()
    [failure] = read_jsonl(out, "failures")
    assert (failure["key"], failure["stage"]) == ("missing", "read")
    assert "No such file" in failure["message"]
    # a missing file is asked for once: not found is not a transient error
    assert FlakyFileSystem.calls[("open", str(tmp_path / "nothing_here.wav"))] == 1
    assert FlakyFileSystem.calls[("open", str(wav))] == 3
    assert record["retries"] == {"read": 3, "write": 2}
    assert record["reconciled"] and not (out / "_work").exists()


def test_a_read_that_keeps_failing_becomes_a_read_failure(tmp_path, short_speech_wav, fast_retries):
    wav, _ = short_speech_wav
    FlakyFileSystem.reset({("open", str(wav)): 10})
    index = write_index(tmp_path / "i.jsonl", [{"key": "short", "uri": flaky(wav)}])
    record = run([f"--input_index={index}", f"--output={tmp_path / 'o'}", f"--config={fast_retries}"],
                 test_pipeline=BeamTestPipeline())
    [failure] = read_jsonl(tmp_path / "o", "failures")
    assert failure["stage"] == "read" and failure["error_type"] == "OpenError"
    assert failure["message"] == "cannot open: timed out (TimeoutError; still failing after 3 attempts)"
    assert FlakyFileSystem.calls[("open", str(wav))] == 3
    assert record["retries"]["read"] == 2 and record["counts"]["failures"] == 1
