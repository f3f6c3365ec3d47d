import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from asr_distill.config import FiltersConfig
from asr_distill.reassemble import assemble_transcript
from asr_distill.records import Failure, FileInfo, IndexRow, SegmentText
from transforms.reassemble import Reassemble

ROW = IndexRow("talk", "/a/talk.mp3", meta={"speaker": "x"})


def texts(*spec):
    return [SegmentText("talk", i, s, e, t, {"avg_logprob": -0.2}) for i, s, e, t in spec]


def test_segments_join_in_time_order_whatever_the_arrival_order():
    info = FileInfo(ROW, 95.0, 80.0, 3)
    rec, dropped = assemble_transcript(info, texts((2, 60.0, 88.0, "three"), (0, 0.5, 29.0, "one"),
                                                   (1, 30.0, 59.0, "two")), [], "m", "p")
    assert dropped == [] and rec["filtered_segments"] == []
    assert rec["text"] == "one two three"
    assert [s["start_s"] for s in rec["segments"]] == [0.5, 30.0, 60.0]
    assert rec["status"] == "ok" and rec["failed_segments"] == []
    assert rec["meta"] == {"speaker": "x"} and rec["model"] == "m" and rec["prompt"] == "p"
    assert (rec["key"], rec["uri"], rec["duration_s"], rec["speech_s"]) == ("talk", "/a/talk.mp3", 95.0, 80.0)


def test_status_no_speech_partial_and_all_failed():
    assert assemble_transcript(FileInfo(ROW, 9.0, 0.0, 0), [], [], "m", None)[0]["status"] == "no_speech"
    partial, _ = assemble_transcript(FileInfo(ROW, 60.0, 50.0, 3), texts((0, 0, 20, "a"), (2, 40, 60, "c")),
                                     [1], "m", None)
    assert partial["status"] == "partial" and partial["failed_segments"] == [1] and partial["text"] == "a c"
    failed, _ = assemble_transcript(FileInfo(ROW, 60.0, 50.0, 2), [], [0, 1], "m", None)
    assert isinstance(failed, Failure) and failed.stage == "inference" and failed.key == "talk"
    assert "all 2 segments" in failed.message


def test_combine_per_key_builds_one_record_per_file():
    other = IndexRow("quiet", "/a/quiet.wav")
    with BeamTestPipeline() as p:
        files = p | "F" >> beam.Create([("talk", FileInfo(ROW, 60.0, 50.0, 2)),
                                        ("quiet", FileInfo(other, 5.0, 0.0, 0))])
        segs = p | "T" >> beam.Create([("talk", t) for t in texts((1, 30, 55, "world"), (0, 1, 29, "hello"))])
        failed = p | "X" >> beam.Create([])
        out = (files, segs, failed) | Reassemble("m", None)
        summary = out.transcripts | beam.Map(lambda r: (r["key"], r["status"], r["text"], len(r["segments"])))
        assert_that(summary, equal_to([("talk", "ok", "hello world", 2), ("quiet", "no_speech", "", 0)]))
        assert_that(out.failures, equal_to([]), label="NoFailures")


def _signals(logprob=-0.2, ratio=1.2):
    return {"avg_logprob": logprob, "compression_ratio": ratio}


def test_quality_rules_flag_segments_or_drop_them():
    segs = [SegmentText("talk", 0, 0.0, 10.0, "a fine sentence of normal speech", _signals()),
            SegmentText("talk", 1, 10.0, 20.0, "mumble mumble mumble", _signals(logprob=-1.6)),
            SegmentText("talk", 2, 20.0, 30.0, "la la la la la la la la la la la la la", _signals(ratio=3.1)),
            SegmentText("talk", 3, 30.0, 31.0, "x" * 60, _signals()),  # 60 chars in 1 s
            SegmentText("talk", 4, 31.0, 40.0, "  ", _signals())]
    info = FileInfo(ROW, 40.0, 40.0, 5)
    flagged, none = assemble_transcript(info, segs, [], "m", None, FiltersConfig(min_chars_per_s=1.0))
    assert none == [] and flagged["filtered_segments"] == []
    assert [s["quality_flags"] for s in flagged["segments"]] == [
        [], ["low_logprob"], ["high_compression_ratio"], ["too_many_chars_per_s"], ["empty"]]
    kept, dropped = assemble_transcript(info, segs, [], "m", None, FiltersConfig(action="drop"))
    assert kept["text"] == "a fine sentence of normal speech" and kept["status"] == "ok"
    assert kept["filtered_segments"] == [1, 2, 3, 4]
    assert [(d["key"], d["index"], d["start_s"], d["quality_flags"]) for d in dropped] == [
        ("talk", 1, 10.0, ["low_logprob"]), ("talk", 2, 20.0, ["high_compression_ratio"]),
        ("talk", 3, 30.0, ["too_many_chars_per_s"]), ("talk", 4, 31.0, ["empty"])]
    assert dropped[0]["text"] == "mumble mumble mumble" and dropped[0]["avg_logprob"] == -1.6
    slow = SegmentText("talk", 0, 0.0, 20.0, "hi", _signals(), parts=((0.0, 1.0), (15.0, 16.0)))
    rec, _ = assemble_transcript(FileInfo(ROW, 20.0, 2.0, 1), [slow], [], "m", None, FiltersConfig(min_chars_per_s=0.5))
    assert rec["segments"][0]["quality_flags"] == []  # 2 chars in 2 s of packed speech (1/s), not in 20 s


def test_a_segment_nothing_came_back_for_is_a_failure_record_and_unreconciles_the_run(tmp_path):
    """Cut 3 segments; a text came back for 0, a failure for 1, nothing for 2 (a worker lost it)."""

    from beam_pipeline.check import problems
    from beam_pipeline.run_record import build_run_record, counters, format_summary, write_json

    p = BeamTestPipeline()
    files = p | "F" >> beam.Create([("talk", FileInfo(ROW, 60.0, 50.0, 3))])
    segs = p | "T" >> beam.Create([("talk", t) for t in texts((0, 0, 20, "a"))])
    failed = p | "X" >> beam.Create([("talk", 1)])
    out = (files, segs, failed) | Reassemble("m", None)
    lost = out.failures | beam.Map(lambda f: (f.key, f.stage, f.error_type, f.segment_index))
    assert_that(lost, equal_to([("talk", "inference", "SegmentLost", 2)]), label="Lost")
    assert_that(out.transcripts | beam.Map(lambda r: (r["status"], r["failed_segments"])),
                equal_to([("partial", [1, 2])]), label="Partial")
    result = p.run()
    result.wait_until_finish()
    metrics = counters(result)
    assert metrics["reassemble"]["segments_lost"] == 1
    # as the run's counters would say: 3 cut, 1 transcribed, 2 segment failure records (one of them lost)
    metrics.update({"segment": {"segments": 3}, "inference": {"segments": 1}, "failures": {"segments": 2},
                    "index": {"rows": 1}})
    record = build_run_record(metrics, wall_s=1.0, started_at="t", input_index="i", output="o", runner="r",
                              stop_after=None, model="m", backend="vllm", config={}, config_digest="d")
    assert record["segments_reconciled"] is False
    assert record["segment_accounting"] == {"cut": 3, "transcribed": 1, "failed": 1, "reused": 0, "lost": 1,
                                            "engine_restarts": 0, "reconciled": False}
    assert "every segment accounted for: NO" in format_summary(record) and "LOST 1" in format_summary(record)
    write_json(str(tmp_path / "run.json"), record)
    found, _ = problems(str(tmp_path), 1.0)
    assert any("segments are not accounted for" in f for f in found)
