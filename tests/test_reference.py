"""Pseudo-labels checked against the reference transcript an index row carries (issue: labels worth
training on): the WER goes into the transcript record, `filters.reference_wer_max` flags or drops a
file whose label disagrees with its reference, rows without one are untouched, and nothing is lost."""

import json

from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill.records import IndexRow
from asr_distill.reference import normalise, reference_text, reference_wer
from beam_pipeline import run
from beam_pipeline.report import write_report
from conftest import read_jsonl, write_index


def test_wer_after_whispers_normaliser():
    # numbers, spelling, case and punctuation are not errors; a changed word is
    assert reference_wer("Mr. Smith paid $20 for twenty-five colour apples!",
                         "mister smith paid 20 dollars for 25 color apples") == 0.0
    assert reference_wer("the cat sat on the mat", "the cat sat on a mat") == 1 / 6
    assert reference_wer("", "two words") == 1.0
    assert reference_wer("anything", " ...! ") is None  # a reference with no words counts nothing
    assert normalise("Größe, STRASSE!", "de") == "größe strasse"  # other languages: basic normaliser
    row = IndexRow("k", "u", meta={"reference_text": "from meta"})
    assert reference_text(row) == "from meta"
    assert reference_text(IndexRow("k", "u", meta={"reference_text": "m"}, reference_text="top")) == "top"
    assert reference_text(IndexRow("k", "u")) is None


def _index(tmp_path, short_speech_wav, silence_file):
    wav, truth = short_speech_wav
    spoken = " ".join(u.text for u in truth)
    return write_index(tmp_path / "index.jsonl", [
        {"key": "right", "uri": str(wav), "text": spoken},
        {"key": "wrong", "uri": str(wav), "meta": {"reference_text": "a completely different sentence about boats"}},
        {"key": "none", "uri": str(wav)},
        {"key": "quiet", "uri": str(silence_file), "text": "nobody speaks here"},
    ]), spoken


def _config(tmp_path, action):
    cfg = tmp_path / f"{action}.yaml"
    cfg.write_text(f"filters:\n  action: {action}\n  reference_wer_max: 0.3\ninference:\n  beam_size: 1\n")
    return cfg


def test_a_wrong_reference_is_flagged_a_right_one_kept_and_rows_without_one_untouched(
        tmp_path, short_speech_wav, silence_file):
    index, _spoken = _index(tmp_path, short_speech_wav, silence_file)
    out = tmp_path / "flag"
    run([f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path, 'flag')}"],
        test_pipeline=BeamTestPipeline())
    by_key = {t["key"]: t for t in read_jsonl(out, "transcripts")}
    assert set(by_key) == {"right", "wrong", "none", "quiet"}
    assert by_key["right"]["reference_wer"] <= 0.15 and by_key["right"]["quality_flags"] == []
    assert by_key["wrong"]["reference_wer"] >= 0.8 and by_key["wrong"]["quality_flags"] == ["high_reference_wer"]
    assert by_key["none"]["reference_wer"] is None and by_key["none"]["quality_flags"] == []
    assert by_key["none"]["text"] == by_key["right"]["text"]  # same audio, same label: only the check differs
    assert by_key["quiet"]["status"] == "no_speech" and by_key["quiet"]["reference_wer"] is None
    record = json.loads((out / "run.json").read_text())
    q = record["quality"]
    assert (q["files_with_reference"], q["files_flagged"], q["files_dropped"]) == (2, 1, 0)
    assert q["by_reason"]["flagged:high_reference_wer"] == 1
    assert record["counts"]["transcripts"] == 4 and record["reconciled"]
    page = (out / "report.html").read_text() if (out / "report.html").exists() else \
        open(write_report(str(out))).read()
    assert "WER against the row&#x27;s reference" in page or "WER against the row's reference" in page
    assert "2 files with a reference" in page and "within reference_wer_max (0.3): 1 (50%)" in page
    assert f"cost: {record['cost']['cpu_core_s']:.0f} CPU-core-s" in page  # the run's cost, in its summary


def test_dropped_files_go_to_filtered_are_counted_and_stay_done_on_resume(tmp_path, short_speech_wav, silence_file):
    index, _spoken = _index(tmp_path, short_speech_wav, silence_file)
    out = tmp_path / "drop"
    args = [f"--input_index={index}", f"--output={out}", f"--config={_config(tmp_path, 'drop')}"]
    run(args, test_pipeline=BeamTestPipeline())
    assert sorted(t["key"] for t in read_jsonl(out, "transcripts")) == ["none", "quiet", "right"]
    (dropped,) = read_jsonl(out, "filtered")
    assert dropped["key"] == "wrong" and dropped["quality_flags"] == ["high_reference_wer"]
    assert dropped["text"] and dropped["segments"]  # the whole transcript, for a user who wants to look
    record = json.loads((out / "run.json").read_text())
    assert record["counts"]["transcripts"] == 3 and record["counts"]["files_dropped"] == 1
    assert record["reconciled"]  # 4 rows = 3 transcripts + 1 dropped file
    run(args + ["--resume"], test_pipeline=BeamTestPipeline())
    resumed = json.loads((out / "run.json").read_text())
    assert resumed["resume"]["rows_skipped"] == 4 and resumed["counts"]["segments"] == 0  # nothing again
    assert resumed["reconciled"]
    assert [f["key"] for f in read_jsonl(out, "filtered")] == ["wrong"]  # carried once, not twice
    assert sorted(t["key"] for t in read_jsonl(out, "transcripts")) == ["none", "quiet", "right"]
