"""Turn speech regions into model-sized segments.

Neighbouring regions merge while the merged piece fits `max_segment_s` and the silence between them is
short; a region longer than the limit is cut at its quietest point, never earlier than `min_split_s`
into the piece, so no piece is a sliver. Times stay absolute (seconds from the file's start).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from asr_distill.config import SegmentingConfig
from asr_distill.records import SAMPLE_RATE, DecodedAudio, Region, Segment

_FRAME_S = 0.02  # energy frame for finding the quietest cut point


def quietest_point(wave: np.ndarray, start_s: float, end_s: float) -> float:
    """The centre (seconds) of the lowest-energy 20 ms frame in [start_s, end_s)."""
    frame = int(_FRAME_S * SAMPLE_RATE)
    lo, hi = int(start_s * SAMPLE_RATE), int(end_s * SAMPLE_RATE)
    window = wave[lo:hi]
    n = len(window) // frame
    if n == 0:
        return (start_s + end_s) / 2
    energy = np.square(window[: n * frame].reshape(n, frame), dtype=np.float64).sum(axis=1)
    # Among equally quiet frames prefer the latest: longer pieces, fewer requests.
    best = n - 1 - int(np.argmin(energy[::-1]))
    return (lo + best * frame + frame / 2) / SAMPLE_RATE


def split_long(region: Region, wave: np.ndarray, cfg: SegmentingConfig) -> list[Region]:
    pieces = []
    start = region.start_s
    while region.end_s - start > cfg.max_segment_s:
        cut = quietest_point(wave, start + cfg.min_split_s, start + cfg.max_segment_s)
        pieces.append(Region(start, cut))
        start = cut
    pieces.append(Region(start, region.end_s))
    return pieces


def merge_regions(regions: list[Region], cfg: SegmentingConfig) -> list[Region]:
    merged: list[Region] = []
    for r in sorted(regions, key=lambda r: r.start_s):
        last: Optional[Region] = merged[-1] if merged else None
        if (last is not None and r.start_s - last.end_s <= cfg.max_merge_gap_s
                and r.end_s - last.start_s <= cfg.max_segment_s):
            merged[-1] = Region(last.start_s, max(last.end_s, r.end_s))
        else:
            merged.append(r)
    return merged


def pack_regions(pieces: list[Region], cfg: SegmentingConfig) -> list[Region]:
    """Group consecutive pieces into requests of at most max_segment_s of audio, silences between them
    shortened to pack_gap_s: the encoder works on 30 s windows, so fuller requests cost less per second."""
    groups: list[list[Region]] = []
    length = 0.0
    for r in sorted(pieces, key=lambda r: r.start_s):
        if groups:
            gap = min(max(0.0, r.start_s - groups[-1][-1].end_s), cfg.pack_gap_s)
            if length + gap + r.duration_s <= cfg.max_segment_s:
                groups[-1].append(r)
                length += gap + r.duration_s
                continue
        groups.append([r])
        length = r.duration_s
    return [_packed(g, cfg.pack_gap_s) for g in groups]


def _packed(group: list[Region], pack_gap_s: float) -> Region:
    if len(group) == 1:
        return group[0]
    parts = []
    for r, nxt in zip(group, group[1:] + [None]):
        # Each part keeps up to pack_gap_s of the silence after it, so words do not run together.
        end = min(nxt.start_s, r.end_s + pack_gap_s) if nxt is not None else r.end_s
        parts.append((r.start_s, end))
    return Region(group[0].start_s, group[-1].end_s, tuple(parts))


def plan_segments(regions: list[Region], wave: np.ndarray, cfg: SegmentingConfig) -> list[Region]:
    """Regions -> the segment boundaries sent to the model, in time order, each <= max_segment_s of audio."""
    duration = len(wave) / SAMPLE_RATE
    clipped = [Region(max(0.0, r.start_s), min(duration, r.end_s)) for r in regions]
    pieces = [p for r in clipped if r.end_s > r.start_s for p in split_long(r, wave, cfg)]
    return pack_regions(pieces, cfg) if cfg.pack else merge_regions(pieces, cfg)


def _samples(wave: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return wave[int(round(start_s * SAMPLE_RATE)): int(round(end_s * SAMPLE_RATE))]


def cut_segments(audio: DecodedAudio, plan: list[Region]) -> list[Segment]:
    """The planned segments. A plain segment's audio is a view into the file's wave (no copy: a worker
    holds an hour of audio once, not twice); a packed one joins its parts into a new array."""
    wave = audio.wave
    segments = []
    for i, r in enumerate(plan):
        if r.parts:
            samples = np.concatenate([_samples(wave, a, b) for a, b in r.parts])
        else:
            samples = _samples(wave, r.start_s, r.end_s)
        segments.append(Segment(key=audio.row.key, index=i, start_s=round(r.start_s, 3),
                                end_s=round(r.end_s, 3), audio=samples, language=audio.row.language,
                                uri=audio.row.uri, parts=r.parts))
    return segments
