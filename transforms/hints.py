"""Term hints: each segment's likely glossary terms, found by the trained term retriever in its audio
before inference, for the teacher's prompt (`--glossary G --retriever CKPT`; issue 43).

The retriever (asr_distill/retrieval/find.py `TermFinder`: its audio tower and the glossary's term
embeddings, cached beside the checkpoint) is loaded once per worker process and shared by its DoFn
instances (the VAD model, which keeps state, loads per instance). A segment the retriever cannot score
goes on without hints (counted, logged).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.config import TermsConfig
from asr_distill.records import Segment

log = logging.getLogger(__name__)


class TermHints(beam.DoFn):
    def __init__(self, checkpoint: str, glossary: str, cfg: TermsConfig):
        self._checkpoint, self._glossary, self._cfg = checkpoint, glossary, cfg
        self._finder = None

    def setup(self):
        from asr_distill.retrieval.find import chosen_threshold, shared_finder

        threshold = self._cfg.hints_threshold
        if threshold is None:  # the run's, chosen on validation for hints; else its operating threshold
            threshold = chosen_threshold(self._checkpoint, "hint_threshold")
            if threshold == math.inf:
                log.warning("the retriever %s found no score at which three hints in four were right on its "
                            "validation split: no segment gets a hint (terms.hints_threshold sets one)",
                            self._checkpoint)
        self._finder = shared_finder(self._checkpoint, self._glossary, self._cfg.hints_device, threshold)

    def process(self, seg: Segment):
        try:
            hints = self._finder.hints(seg.audio, self._cfg.hints_top_k)
        except (RuntimeError, ValueError) as err:  # the segment is transcribed without hints
            Metrics.counter("hints", "failures").inc()
            log.warning("term hints for %s failed: %s: %s", seg.segment_id, type(err).__name__, err)
            yield seg
            return
        Metrics.counter("hints", "segments").inc()
        if hints:
            Metrics.counter("hints", "hinted").inc()
        yield dataclasses.replace(seg, hints=hints)
