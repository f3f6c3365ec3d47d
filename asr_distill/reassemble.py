"""Stitch one file's segment transcripts back into its transcript record (DESIGN.md).

Quality rules (asr_distill/filters.py) are applied here, where a file's segments meet: each segment
gets `quality_flags`; with `filters.action: drop` a flagged segment leaves the transcript (its index in
`filtered_segments`) and comes back separately, as a line for filtered-*.jsonl.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

from asr_distill import __version__
from asr_distill.config import FiltersConfig
from asr_distill.filters import quality_reasons
from asr_distill.redact import redact
from asr_distill.reference import RULE as REFERENCE_RULE, reference_text, reference_wer
from asr_distill.records import Failure, FileInfo, SegmentText


class AllSegmentsFailed(Exception):
    pass


class SegmentLost(Exception):
    """A segment was cut, but neither its text nor a failure record came back from inference."""


def lost_segments(info: FileInfo, texts: Iterable[SegmentText], failed_indexes: Iterable[int]) -> list[Failure]:
    """One failure record per segment of the file that nothing came back for: never a silent gap."""
    missing = set(range(info.num_segments)) - {t.index for t in texts} - set(failed_indexes)
    return [Failure.of(info.row, "inference", SegmentLost(
        f"segment {i} was cut but no text and no failure came back for it (a worker or engine lost it); "
        "the run is marked not reconciled"), segment_index=i) for i in sorted(missing)]


def filtered_line(t: SegmentText, reasons: list[str]) -> dict:
    return {"key": t.key, "index": t.index, **t.to_json(), "quality_flags": reasons}


def assemble_transcript(info: FileInfo, texts: Iterable[SegmentText], failed_indexes: Iterable[int],
                        model: str, prompt: Optional[str], filters: FiltersConfig = FiltersConfig(),
                        ) -> tuple[Union[dict, Failure], list[dict]]:
    """(the file's transcript record, or a file-level failure when none of its segments made it;
    the segments dropped by the quality rules, as filtered-*.jsonl lines)."""
    texts = sorted(texts, key=lambda t: (t.start_s, t.index))
    missing = set(range(info.num_segments)) - {t.index for t in texts}
    failed = sorted(set(failed_indexes) | missing)
    if info.num_segments and not texts:
        return Failure.of(info.row, "inference", AllSegmentsFailed(
            f"all {info.num_segments} segments failed inference")), []
    judged = [(t, quality_reasons(t, filters)) for t in texts]
    dropped = [(t, r) for t, r in judged if r and filters.action == "drop"]
    kept = [(t, r) for t, r in judged if not (r and filters.action == "drop")]
    if info.num_segments == 0:
        status = "no_speech"
    elif failed:
        status = "partial"
    else:
        status = "ok"
    row = info.row
    text = " ".join(t.text for t, _r in kept if t.text)
    reference = reference_text(row)
    wer = reference_wer(text, reference, row.language) if reference is not None and status != "no_speech" else None
    file_flags = [REFERENCE_RULE] if (wer is not None and filters.reference_wer_max is not None
                                       and wer > filters.reference_wer_max) else []
    record = {
        "key": row.key,
        "uri": redact(row.uri),
        "duration_s": round(info.duration_s, 3),
        "speech_s": round(info.speech_s, 3),
        "status": status,
        "text": text,
        "segments": [{**t.to_json(), "quality_flags": r} for t, r in kept],
        "model": model,
        "prompt": prompt,
        "failed_segments": failed,
        "filtered_segments": [t.index for t, _r in dropped],
        "reference_wer": None if wer is None else round(wer, 4),
        "quality_flags": file_flags,
        "meta": row.meta,
        "pipeline_version": __version__,
    }
    return record, [filtered_line(t, r) for t, r in dropped]
