import numpy as np
import pytest

from asr_distill.config import SegmentingConfig
from asr_distill.records import DecodedAudio, IndexRow, Region
from asr_distill.segmenting import cut_segments, merge_regions, plan_segments, quietest_point

CFG = SegmentingConfig(max_segment_s=30, max_merge_gap_s=2.0, min_split_s=10)


def loud(duration_s: float, quiet_at: list[float] = (), quiet_len_s: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal(int(duration_s * 16000))).astype(np.float32)
    for t in quiet_at:
        a = int(t * 16000)
        wave[a: a + int(quiet_len_s * 16000)] *= 0.001
    return wave


def test_neighbours_merge_up_to_the_gap_limit():
    regions = [Region(1.0, 4.0), Region(5.5, 8.0), Region(10.5, 12.0)]  # gaps 1.5 then 2.5
    assert merge_regions(regions, CFG) == [Region(1.0, 8.0), Region(10.5, 12.0)]


def test_gap_exactly_at_limit_merges():
    assert merge_regions([Region(0, 1), Region(3.0, 4)], CFG) == [Region(0, 4)]


def test_merge_stops_at_max_segment():
    regions = [Region(0, 10), Region(10.5, 20), Region(20.5, 30.0), Region(30.5, 31)]
    merged = merge_regions(regions, CFG)
    assert merged == [Region(0, 30.0), Region(30.5, 31)]
    assert merge_regions([Region(0, 10), Region(10.5, 30.01)], CFG) == [Region(0, 10), Region(10.5, 30.01)]


def test_long_speech_is_split_at_its_quietest_point():
    wave = loud(70, quiet_at=[23.0, 51.0])
    plan = plan_segments([Region(0.0, 70.0)], wave, CFG)
    assert len(plan) == 3
    assert plan[0].start_s == 0.0 and plan[-1].end_s == 70.0
    assert 23.0 <= plan[0].end_s <= 23.1 and 51.0 <= plan[1].end_s <= 51.1  # inside the quiet spans
    for a, b in zip(plan, plan[1:]):
        assert a.end_s == b.start_s  # contiguous: no speech lost
    assert all(r.duration_s <= 30 for r in plan)


def test_split_never_makes_slivers():
    wave = loud(40, quiet_at=[2.0])  # the quiet spot is before min_split_s: ignored
    plan = plan_segments([Region(0, 40)], wave, CFG)
    assert plan[0].duration_s >= CFG.min_split_s and all(r.duration_s <= 30 for r in plan)


def test_quietest_point_prefers_the_later_of_equal_silences():
    wave = np.zeros(16000 * 4, np.float32)
    assert quietest_point(wave, 1.0, 3.0) == pytest.approx(2.99, abs=0.02)


def test_regions_past_the_end_are_clipped_and_times_stay_absolute():
    wave = loud(20)
    plan = plan_segments([Region(-0.2, 3), Region(12, 25)], wave, SegmentingConfig(max_merge_gap_s=0.5))
    assert plan == [Region(0.0, 3), Region(12, 20.0)]
    audio = DecodedAudio(IndexRow("k", "u.wav", language="de"), wave)
    segs = cut_segments(audio, plan)
    assert [(s.key, s.index, s.start_s, s.end_s) for s in segs] == [("k", 0, 0.0, 3.0), ("k", 1, 12.0, 20.0)]
    assert len(segs[1].audio) == 8 * 16000
    np.testing.assert_array_equal(segs[1].audio, wave[12 * 16000:])
    assert segs[0].segment_id == "k-00000" and segs[0].language == "de" and segs[0].uri == "u.wav"


def test_no_regions_no_segments():
    assert plan_segments([], loud(5), CFG) == []


PACK = SegmentingConfig(max_segment_s=30, max_merge_gap_s=2.0, min_split_s=10, pack=True, pack_gap_s=0.3)


def test_packing_joins_far_apart_speech_up_to_the_limit():
    regions = [Region(0, 5), Region(15, 21), Region(40, 52), Region(70, 78), Region(90, 100)]
    wave = loud(110)
    plan = plan_segments(regions, wave, PACK)
    # 5 + .3 + 6 + .3 + 12 = 23.6 fits; + .3 + 8 would be 31.9: a new request starts.
    assert [(r.start_s, r.end_s) for r in plan] == [(0, 52), (70, 100)]
    assert plan[0].parts == ((0, 5.3), (15, 21.3), (40, 52))
    segs = cut_segments(DecodedAudio(IndexRow("k", "u"), wave), plan)
    assert len(segs[0].audio) == int(23.6 * 16000)
    np.testing.assert_array_equal(segs[0].audio[: 5 * 16000], wave[: 5 * 16000])
    np.testing.assert_array_equal(segs[0].audio[int(5.3 * 16000): int(11.3 * 16000)], wave[15 * 16000: 21 * 16000])
    assert all(len(s.audio) <= 30 * 16000 for s in segs)
    assert segs[1].parts == ((70, 78.3), (90, 100))


def test_packing_keeps_short_gaps_whole_and_lone_regions_plain():
    plan = plan_segments([Region(0, 4), Region(4.1, 8)], loud(10), PACK)
    assert plan == [Region(0, 8, ((0, 4.1), (4.1, 8)))]
    assert plan_segments([Region(1, 29.5)], loud(31), PACK) == [Region(1, 29.5)]
