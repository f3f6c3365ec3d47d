"""Term chunks (`--glossary`): the retriever's training data, cut where the audio still is.

Right after inference, in the same fused stage (decoded audio never crosses a shuffle), a segment
whose text says a glossary term (or that was drawn for a no-term chunk) keeps its audio: its words
are timed by forced alignment with a Whisper model (asr_distill/terms.py: the same for every
backend, so the vLLM teachers' texts get word times too), its chunks are planned and their audio is
appended to a packed shard (OUTPUT/term-shards/terms-<hash>.dat, 16 kHz int16, the format the trainer
memory-maps). Each segment's text then carries its chunk records and the hits it could not use; the
texts of a bundle are let go only after their shard is whole on disk, so a committed text never
points at audio that is not there, and a resumed run gets its reused segments' chunks from their
texts. The records are written with the transcripts (term_chunks-*.jsonl, same bucket, before the
transcript), so every committed transcript has its chunks exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from collections import Counter

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from asr_distill.config import TermsConfig
from asr_distill.glossary import Glossary
from asr_distill.records import SAMPLE_RATE, Segment, SegmentText
from asr_distill.shards import PCM_SUFFIX, ByteRange, to_pcm16
from asr_distill.terms import TermMatcher, align_words, no_term_chunks, no_term_count, plan_chunks
from transforms.common import report_cpu
from transforms.write import work_path, write_then_rename

log = logging.getLogger(__name__)

SHARD_DIR = "term-shards"
ALIGN_ERRORS = (RuntimeError, ValueError, IndexError)


def wants_audio(matcher: TermMatcher, cfg: TermsConfig, seg: Segment, text: str) -> bool:
    """Whether a transcribed segment goes to TermChunks with its audio: it says a term, or it was
    drawn for a no-term chunk."""
    return matcher.in_text(text) or no_term_count(cfg.no_term_ratio, 0, seg.segment_id) > 0


def file_time(seg: SegmentText, t: float) -> float:
    """A time in the segment's audio -> the file's clock (a packed segment joins parts)."""
    if not seg.parts:
        return round(seg.start_s + t, 3)
    at = 0.0
    for a, b in seg.parts:
        if t <= at + (b - a):
            return round(a + (t - at), 3)
        at += b - a
    return round(seg.parts[-1][1], 3)


def load_aligner(cfg: TermsConfig):
    from faster_whisper import WhisperModel

    from asr_distill.models import embedded_whisper_base

    device = cfg.align_device
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
    return WhisperModel(cfg.align_model or str(embedded_whisper_base()), device=device,
                        compute_type="int8" if device == "cpu" else "float16", cpu_threads=1,
                        local_files_only=True)


class TermChunks(beam.DoFn):
    """(Segment with audio, SegmentText) -> (key, SegmentText with `chunks`), after its shard is written."""

    def __init__(self, glossary: Glossary, cfg: TermsConfig, output_dir: str):
        self._glossary = glossary
        self._cfg = cfg
        self._output = output_dir

    def setup(self):
        self._matcher = TermMatcher(self._glossary)
        self._model = load_aligner(self._cfg)

    def start_bundle(self):
        self._pending: list[tuple[SegmentText, list[dict], dict, int]] = []
        self._audio: list[bytes] = []
        self._size = 0

    def process(self, item):
        seg, text = item
        t0 = time.perf_counter()
        records, skipped, hits = self._chunks(seg, text)
        Metrics.counter("terms", "align_ms").inc(int(1000 * (time.perf_counter() - t0)))
        Metrics.counter("terms", "segments").inc()
        Metrics.counter("terms", "hits").inc(hits)
        for reason, n in skipped.items():
            Metrics.counter("terms", f"skipped_{reason}").inc(n)
        self._pending.append((text, records, dict(skipped), hits))
        if self._size >= self._cfg.shard_mb * 2 ** 20:
            yield from self._flush()

    def finish_bundle(self):
        report_cpu()
        for out in self._flush():
            yield WindowedValue(out, MIN_TIMESTAMP, [GlobalWindow()])

    def _chunks(self, seg: Segment, text: SegmentText) -> tuple[list[dict], Counter, int]:
        cfg = self._cfg
        duration = len(seg.audio) / SAMPLE_RATE
        try:
            words = align_words(self._model, seg.audio, text.text)
        except ALIGN_ERRORS as err:  # counted, and the text goes on without chunks
            log.warning("segment %s: word alignment failed: %s", seg.segment_id, err)
            hits = len(self._matcher.find_in_text(text.text))
            return [], Counter({"align_failed": hits}), hits
        hits = self._matcher.find(words)
        plans, skipped = plan_chunks(words, hits, duration, cfg.context_s, cfg.max_chunk_s, cfg.margin_s)
        plans += no_term_chunks(words, hits, duration, no_term_count(cfg.no_term_ratio, len(hits), seg.segment_id),
                                seg.segment_id, cfg.no_term_s, cfg.margin_s)
        records = []
        for i, plan in enumerate(plans):
            data = to_pcm16(seg.audio[int(plan.start_s * SAMPLE_RATE): int(plan.end_s * SAMPLE_RATE)]).tobytes()
            if not data:
                skipped["empty_audio"] += plan.term is not None
                continue
            records.append({
                "key": seg.key, "chunk": f"{seg.key}/{seg.index:05d}/{i}", "segment_index": seg.index,
                "offset": self._size, "length": len(data), "term": plan.term, "terms": list(plan.terms),
                "text": plan.text, "start_s": file_time(text, plan.start_s), "end_s": file_time(text, plan.end_s),
                "duration_s": round(len(data) / 2 / SAMPLE_RATE, 3),
                **({"term_start_s": file_time(text, plan.term_start_s), "term_end_s": file_time(text, plan.term_end_s)}
                   if plan.term is not None else {})})
            self._audio.append(data)
            self._size += len(data)
            Metrics.counter("terms", "chunks" if plan.term is not None else "no_term_chunks").inc()
            Metrics.counter("terms", "chunk_ms").inc(int(1000 * len(data) / 2 / SAMPLE_RATE))
        return records, skipped, len(hits)

    def _flush(self):
        """Writes the pending chunks' shard (temporary file, then rename), then lets their texts go."""
        if self._audio:
            data = b"".join(self._audio)
            name = f"terms-{hashlib.sha256(data).hexdigest()[:20]}{PCM_SUFFIX}"
            folder = FileSystems.join(self._output, SHARD_DIR)
            final = FileSystems.join(folder, name)
            if not FileSystems.exists(folder):
                try:
                    FileSystems.mkdirs(folder)
                except OSError:  # another worker made it
                    pass
            if not FileSystems.exists(final):
                write_then_rename(work_path(self._output, "tmp", f"{name}.{uuid.uuid4().hex}.tmp"), final, data)
            Metrics.counter("terms", "shards").inc()
        else:
            name = None
        for text, records, skipped, hits in self._pending:
            for r in records:
                r["uri"] = ByteRange(f"{SHARD_DIR}/{name}", r.pop("offset"), r.pop("length")).uri()
            yield text.key, dataclasses.replace(text, chunks={"records": records, "skipped": skipped, "hits": hits})
        self.start_bundle()


def chunk_records(keyed_text) -> list[dict]:
    """The term-chunk records a segment text carries (new or reused on resume)."""
    _key, text = keyed_text
    return list((text.chunks or {}).get("records", []))


