"""Quality filters for pseudo-labels: which segments look like a bad transcript, and why.

Each rule looks at one segment's text and the backend's signals; a segment breaking any rule gets the
rules' names as reasons. What happens then (flag and keep, or drop into filtered-*.jsonl) is
`filters.action`. A rule whose signal the backend does not give (no `avg_logprob`, say) does not fire.
"""

from __future__ import annotations

from asr_distill.config import FiltersConfig
from asr_distill.records import SegmentText

REASONS = ("empty", "low_logprob", "high_compression_ratio", "too_few_chars_per_s", "too_many_chars_per_s")


def speech_seconds(t: SegmentText) -> float:
    """What the model heard: the parts of a packed segment, else the segment."""
    if t.parts:
        return sum(b - a for a, b in t.parts)
    return t.end_s - t.start_s


def quality_reasons(t: SegmentText, cfg: FiltersConfig) -> list[str]:
    text = t.text.strip()
    if not text:
        return ["empty"] if cfg.flag_empty else []
    reasons = []
    logprob = t.signals.get("avg_logprob")
    if cfg.min_avg_logprob is not None and logprob is not None and logprob < cfg.min_avg_logprob:
        reasons.append("low_logprob")
    ratio = t.signals.get("compression_ratio")
    if cfg.max_compression_ratio is not None and ratio is not None and ratio > cfg.max_compression_ratio:
        reasons.append("high_compression_ratio")
    seconds = speech_seconds(t)
    if seconds > 0:
        rate = len(text) / seconds
        if cfg.min_chars_per_s is not None and rate < cfg.min_chars_per_s:
            reasons.append("too_few_chars_per_s")
        if cfg.max_chars_per_s is not None and rate > cfg.max_chars_per_s:
            reasons.append("too_many_chars_per_s")
    return reasons
