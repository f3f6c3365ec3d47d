import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from asr_distill.reassemble import assemble_transcript
from asr_distill.records import Failure, FileInfo, IndexRow, SegmentText
from transforms.reassemble import Reassemble

ROW = IndexRow("talk", "/a/talk.mp3", meta={"speaker": "x"})


def texts(*spec):
    return [SegmentText("talk", i, s, e, t, {"avg_logprob": -0.2}) for i, s, e, t in spec]


def test_segments_join_in_time_order_whatever_the_arrival_order():
    info = FileInfo(ROW, 95.0, 80.0, 3)
    rec = assemble_transcript(info, texts((2, 60.0, 88.0, "three"), (0, 0.5, 29.0, "one"),
                                          (1, 30.0, 59.0, "two")), [], "m", "p")
    assert rec["text"] == "one two three"
    assert [s["start_s"] for s in rec["segments"]] == [0.5, 30.0, 60.0]
    assert rec["status"] == "ok" and rec["failed_segments"] == []
    assert rec["meta"] == {"speaker": "x"} and rec["model"] == "m" and rec["prompt"] == "p"
    assert (rec["key"], rec["uri"], rec["duration_s"], rec["speech_s"]) == ("talk", "/a/talk.mp3", 95.0, 80.0)


def test_status_no_speech_partial_and_all_failed():
    assert assemble_transcript(FileInfo(ROW, 9.0, 0.0, 0), [], [], "m", None)["status"] == "no_speech"
    partial = assemble_transcript(FileInfo(ROW, 60.0, 50.0, 3), texts((0, 0, 20, "a"), (2, 40, 60, "c")),
                                  [1], "m", None)
    assert partial["status"] == "partial" and partial["failed_segments"] == [1] and partial["text"] == "a c"
    failed = assemble_transcript(FileInfo(ROW, 60.0, 50.0, 2), [], [0, 1], "m", None)
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
