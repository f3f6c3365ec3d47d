"""End to end through the real pipeline on DirectRunner: real decode, Silero, faster-whisper."""

import json
import subprocess
import sys

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

import speechgen
from asr_distill.config import Config
from beam_pipeline import build, run
from conftest import read_jsonl, write_index


@pytest.fixture(scope="module")
def index_rows(long_forms, silence_file, broken_files, short_speech_wav, media_dir):
    rows = [{"key": k, "uri": str(t.path), "meta": {"source": "generated"}} for k, t in long_forms.items()]
    rows += [
        {"key": "quiet", "uri": str(silence_file)},
        {"key": "garbage", "uri": str(broken_files["garbage"])},
        {"key": "gone", "uri": str(media_dir / "no_such_file.wav")},
        {"key": "no-uri"},
        {"uri": "short.wav"},  # relative to the index; key defaults to the uri without extension
    ]
    return rows


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, media_dir, index_rows):
    index = write_index(media_dir / "index.jsonl", index_rows + ['{"key": "broken json"'])
    out = tmp_path_factory.mktemp("out")
    record = run([f"--input_index={index}", f"--output={out}"], test_pipeline=BeamTestPipeline())
    return {"out": out, "record": record, "transcripts": read_jsonl(out, "transcripts"),
            "failures": read_jsonl(out, "failures"),
            "run_json": json.loads((out / "run.json").read_text())}


def by_key(records):
    return {r["key"]: r for r in records}


def test_every_row_ends_in_exactly_one_place(full_run):
    keys = [r["key"] for r in full_run["transcripts"]]
    file_failures = [f for f in full_run["failures"] if "segment_index" not in f]
    assert len(keys) == len(set(keys)) == 5
    assert set(keys) == {"talk_mp3", "talk_flac", "talk_mp4", "quiet", "short"}
    assert sorted(((f["key"], f["stage"]) for f in file_failures), key=str) == sorted([
        ("garbage", "decode"), ("gone", "read"), ("no-uri", "index"), (None, "index")], key=str)
    assert not set(keys) & {f["key"] for f in file_failures}


def test_transcripts_match_the_spoken_text(full_run, long_forms):
    recs = by_key(full_run["transcripts"])
    for key, talk in long_forms.items():
        rec = recs[key]
        assert rec["status"] == "ok" and rec["failed_segments"] == []
        assert speechgen.word_error_rate(talk.text, rec["text"]) <= 0.15, (key, rec["text"])
        assert rec["meta"] == {"source": "generated"}
        assert rec["uri"] == str(talk.path)
        assert rec["duration_s"] == pytest.approx(talk.utterances[-1].end_s, abs=3.5)


def test_segments_are_ordered_bounded_and_never_cut_a_sentence(full_run, long_forms):
    recs = by_key(full_run["transcripts"])
    for key, talk in long_forms.items():
        segs = recs[key]["segments"]
        assert len(segs) >= 2  # > 30 s of speech needs at least two requests
        starts = [s["start_s"] for s in segs]
        assert starts == sorted(starts)
        assert all(0 < s["end_s"] - s["start_s"] <= 30.0 for s in segs)
        assert all(a["end_s"] <= b["start_s"] for a, b in zip(segs, segs[1:]))
        for u in talk.utterances:  # every sentence sits inside one segment
            assert any(s["start_s"] <= u.start_s + 0.15 and u.end_s - 0.15 <= s["end_s"] for s in segs), u
        assert " ".join(s["text"] for s in segs) == recs[key]["text"]
        for s in segs:
            assert {"avg_logprob", "no_speech_prob", "compression_ratio"} <= set(s)


def test_silence_is_no_speech_and_relative_uris_resolve(full_run, short_speech_wav):
    recs = by_key(full_run["transcripts"])
    quiet = recs["quiet"]
    assert (quiet["status"], quiet["text"], quiet["segments"], quiet["speech_s"]) == ("no_speech", "", [], 0.0)
    wav, truth = short_speech_wav
    assert recs["short"]["uri"] == str(wav)
    assert speechgen.word_error_rate(" ".join(u.text for u in truth), recs["short"]["text"]) <= 0.15


def test_failure_records_say_what_and_where(full_run):
    fails = {f["key"]: f for f in full_run["failures"]}
    assert fails["garbage"]["error_type"] == "DecodeError"
    assert fails["gone"]["message"] == "cannot open: No such file or directory"
    assert fails["no-uri"]["message"].startswith("row has no 'uri'")
    assert "not valid JSON" in fails[None]["message"]
    for f in full_run["failures"]:
        assert set(f) == {"key", "uri", "stage", "error_type", "message"}
        assert "Traceback" not in f["message"]


def test_run_json_accounts_for_everything(full_run):
    rj = full_run["run_json"]
    c = rj["counts"]
    assert c["index_rows"] == 9 and c["files_decoded"] == 5 and c["transcripts"] == 5
    assert c["status"] == {"ok": 4, "no_speech": 1, "partial": 0}
    assert c["failures"] == 4 and c["failures_by_stage"] == {"index": 2, "read": 1, "decode": 1}
    assert rj["reconciled"] is True
    assert c["segments"] == sum(len(r["segments"]) for r in full_run["transcripts"])
    durations = sum(r["duration_s"] for r in full_run["transcripts"])
    assert rj["audio_s"] == pytest.approx(durations, abs=0.05)
    assert rj["model"] == "whisper-base (CTranslate2, embedded)" and rj["backend"] == "faster-whisper"
    assert rj["config_digest"] == Config().digest() and rj["runner"] == "DirectRunner"
    assert rj["throughput"]["audio_s_per_wall_s"] > 0 and rj["wall_s"] > 0
    assert {"apache-beam", "faster-whisper", "torch", "av"} <= set(rj["versions"])


def test_pipeline_adds_no_errors_over_faster_whisper_itself(full_run, long_forms):
    """Same model through faster-whisper's own long-form transcribe, over all three files.

    Different cut points flip a word or two either way (measured: ours 2.6%, faster-whisper 1.9% on
    270 words), so the check is "within 1.5 points", i.e. at most about four words of 270.
    """
    from faster_whisper import WhisperModel

    from asr_distill.models import embedded_whisper_base

    model = WhisperModel(str(embedded_whisper_base()), device="cpu", compute_type="int8")
    recs = by_key(full_run["transcripts"])
    truth, ours, theirs = [], [], []
    for key, talk in long_forms.items():
        segments, _info = model.transcribe(str(talk.path), beam_size=5, vad_filter=True)
        truth.append(talk.text)
        theirs.append(" ".join(s.text for s in segments))
        ours.append(recs[key]["text"])
    ours_wer = speechgen.word_error_rate(" ".join(truth), " ".join(ours))
    reference_wer = speechgen.word_error_rate(" ".join(truth), " ".join(theirs))
    assert ours_wer <= reference_wer + 0.015, (ours_wer, reference_wer)


def test_stop_after_segment_from_a_parquet_index(tmp_path, media_dir, index_rows, full_run):
    table = pa.Table.from_pylist([{"key": r.get("key"), "uri": r.get("uri")} for r in index_rows])
    pq.write_table(table, media_dir / "index.parquet")
    out = tmp_path / "seg"
    record = run([f"--input_index={media_dir / 'index.parquet'}", f"--output={out}", "--stop_after=segment"])
    assert not list(out.glob("transcripts-*"))
    rows = read_jsonl(out, "segments")
    assert all(set(r) == {"key", "index", "start_s", "end_s"} for r in rows)
    got = sorted((r["key"], r["index"], r["start_s"], r["end_s"]) for r in rows)
    want = sorted((t["key"], i, s["start_s"], s["end_s"])
                  for t in full_run["transcripts"] for i, s in enumerate(t["segments"]))
    assert got == want
    assert record["reconciled"] and record["counts"]["failures"] == 3  # no bad-JSON row in Parquet
    assert record["model"] is None


def test_build_with_test_pipeline(media_dir, silence_file, short_speech_wav, tmp_path):
    wav, truth = short_speech_wav
    index = write_index(tmp_path / "i.jsonl", [{"key": "quiet", "uri": str(silence_file)},
                                               {"key": "short", "uri": str(wav)}])
    with BeamTestPipeline() as p:
        out = build(p, Config(), str(index), str(tmp_path / "o"))
        summary = out["transcripts"] | beam.Map(lambda r: (r["key"], r["status"], len(r["segments"])))
        assert_that(summary, equal_to([("quiet", "no_speech", 0), ("short", "ok", 1)]))
        assert_that(out["failures"], equal_to([]), label="NoFailures")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "beam_pipeline", *args], capture_output=True, text=True)


def test_cli_rejects_bad_calls_clearly(tmp_path, media_dir, full_run):
    bad = tmp_path / "bad.yaml"
    bad.write_text("segmenting:\n  max_segment_s: 90\n")
    index = media_dir / "index.jsonl"
    r = _cli(f"--input_index={index}", f"--output={tmp_path / 'o'}", f"--config={bad}")
    assert r.returncode == 2 and "segmenting.max_segment_s" in r.stderr and "Traceback" not in r.stderr
    r = _cli(f"--input_index={index}")
    assert r.returncode == 2 and "--output" in r.stderr
    r = _cli(f"--input_index={tmp_path / 'none-*.jsonl'}", f"--output={tmp_path / 'o'}")
    assert r.returncode == 2 and "no index file matches" in r.stderr
    r = _cli(f"--input_index={index}", f"--output={full_run['out']}")
    assert r.returncode == 2 and "already holds results" in r.stderr


def test_packed_segments_transcribe_as_well(tmp_path, long_forms, full_run):
    talk = long_forms["talk_mp3"]
    index = write_index(tmp_path / "i.jsonl", [{"key": "talk_mp3", "uri": str(talk.path)}])
    cfg = tmp_path / "pack.yaml"
    cfg.write_text("segmenting:\n  pack: true\n  max_merge_gap_s: 0.5\n")
    run([f"--input_index={index}", f"--output={tmp_path / 'o'}", f"--config={cfg}"])
    rec = read_jsonl(tmp_path / "o", "transcripts")[0]
    unpacked = by_key(full_run["transcripts"])["talk_mp3"]
    assert len(rec["segments"]) <= len(unpacked["segments"])
    assert any("parts" in s for s in rec["segments"])
    for s in rec["segments"]:
        parts = s.get("parts", [[s["start_s"], s["end_s"]]])
        assert parts[0][0] == s["start_s"] and parts[-1][1] == s["end_s"]
        assert sum(b - a for a, b in parts) <= 30.0
    assert speechgen.word_error_rate(talk.text, rec["text"]) <= 0.15


def test_a_segment_failing_inference_makes_its_file_partial(monkeypatch, tmp_path, long_forms):
    """The vllm backend on the engine double (tests/fake_vllm.py), refusing segments over 20 s."""
    monkeypatch.setenv("ASR_DISTILL_VLLM_ENGINE", "fake_vllm")
    monkeypatch.setenv("FAKE_VLLM_MAX_AUDIO_S", "20")
    monkeypatch.setattr("asr_distill.asr.vllm_backend._ENGINES", {})
    cfg = tmp_path / "vllm.yaml"
    cfg.write_text("inference:\n  backend: vllm\n  model: fake-qwen2-audio\n  share_across_processes: false\n")
    talk = long_forms["talk_mp3"]
    index = write_index(tmp_path / "i.jsonl", [{"key": "talk", "uri": str(talk.path)}])
    out = tmp_path / "o"
    record = run([f"--input_index={index}", f"--output={out}", f"--config={cfg}"], test_pipeline=BeamTestPipeline())
    [t] = read_jsonl(out, "transcripts")
    failures = read_jsonl(out, "failures")
    assert t["status"] == "partial" and t["failed_segments"]
    assert all(s["end_s"] - s["start_s"] <= 20.0 for s in t["segments"]) and t["segments"]
    assert sorted(f["segment_index"] for f in failures) == t["failed_segments"]
    assert {(f["key"], f["stage"], f["error_type"]) for f in failures} == {("talk", "inference", "ValueError")}
    assert all("longer than max_model_len" in f["message"] for f in failures)
    c = record["counts"]
    assert c["status"]["partial"] == 1 and c["failures"] == 0 and c["segment_failures"] == len(failures)
    assert record["reconciled"] and record["segments_reconciled"]
    seg = record["segment_accounting"]
    assert seg["cut"] == seg["transcribed"] + seg["failed"] and seg["failed"] == len(failures) and seg["lost"] == 0
