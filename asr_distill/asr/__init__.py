"""ASR backends behind one interface, and the per-segment failure isolation they share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence, Union

from asr_distill.config import InferenceConfig
from asr_distill.records import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transcription:
    text: str
    signals: dict[str, Any] = field(default_factory=dict)


class ASRBackend(Protocol):
    model_name: str
    prompt: Optional[str]
    # Errors that concern the request, not the process: a batch that raises one is retried a segment at
    # a time so that only the bad segments fail.
    recoverable_errors: tuple[type[BaseException], ...]

    def transcribe_batch(self, segments: Sequence[Segment]) -> list[Transcription]: ...


def load_backend(cfg: InferenceConfig) -> ASRBackend:
    if cfg.backend == "faster-whisper":
        from asr_distill.asr.faster_whisper import FasterWhisperBackend

        return FasterWhisperBackend(cfg)
    raise ValueError(f"unknown backend {cfg.backend!r}")


def transcribe_isolating(backend: ASRBackend, segments: Sequence[Segment]
                         ) -> list[Union[Transcription, BaseException]]:
    """One result per segment, in order: its transcription, or the error that sank it alone."""
    if not segments:
        return []
    try:
        return list(backend.transcribe_batch(segments))
    except backend.recoverable_errors as err:
        if len(segments) == 1:
            return [err]
        log.warning("batch of %d failed (%s: %s); retrying one at a time",
                    len(segments), type(err).__name__, err)
    return [transcribe_isolating(backend, [s])[0] for s in segments]


def model_label(cfg: InferenceConfig) -> str:
    """The model name recorded in transcripts, known without loading the model."""
    if cfg.model:
        return cfg.model
    from asr_distill.models import EMBEDDED_MODEL_NAME

    return EMBEDDED_MODEL_NAME
