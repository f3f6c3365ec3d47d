"""Stitch one file's segment transcripts back into its transcript record (DESIGN.md)."""

from __future__ import annotations

from typing import Iterable, Optional, Union

from asr_distill import __version__
from asr_distill.redact import redact
from asr_distill.records import Failure, FileInfo, SegmentText


class AllSegmentsFailed(Exception):
    pass


def assemble_transcript(info: FileInfo, texts: Iterable[SegmentText], failed_indexes: Iterable[int],
                        model: str, prompt: Optional[str]) -> Union[dict, Failure]:
    """The transcript record of a file, or a file-level failure when none of its segments made it."""
    texts = sorted(texts, key=lambda t: (t.start_s, t.index))
    missing = set(range(info.num_segments)) - {t.index for t in texts}
    failed = sorted(set(failed_indexes) | missing)
    if info.num_segments and not texts:
        return Failure.of(info.row, "inference", AllSegmentsFailed(
            f"all {info.num_segments} segments failed inference"))
    if info.num_segments == 0:
        status = "no_speech"
    elif failed:
        status = "partial"
    else:
        status = "ok"
    row = info.row
    return {
        "key": row.key,
        "uri": redact(row.uri),
        "duration_s": round(info.duration_s, 3),
        "speech_s": round(info.speech_s, 3),
        "status": status,
        "text": " ".join(t.text for t in texts if t.text),
        "segments": [t.to_json() for t in texts],
        "model": model,
        "prompt": prompt,
        "failed_segments": failed,
        "meta": row.meta,
        "pipeline_version": __version__,
    }
