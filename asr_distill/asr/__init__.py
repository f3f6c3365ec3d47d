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

    def transcribe_batch(self, segments: Sequence[Segment]) -> list[Union[Transcription, BaseException]]:
        """One result per segment; a backend that can tell which segment failed returns its error in place."""


class IsolatingBackend:
    """Mixin: `transcribe_segments` gives one result per segment, isolating segments that fail.

    Callers (the Beam handler) use only this method, so that it also works through a cross-process
    proxy, which forwards method calls and nothing else.
    """

    def transcribe_segments(self, segments: Sequence[Segment]) -> list[Union[Transcription, BaseException]]:
        return transcribe_isolating(self, segments)


def load_backend(cfg: InferenceConfig) -> ASRBackend:
    if cfg.backend == "faster-whisper":
        from asr_distill.asr.faster_whisper import FasterWhisperBackend

        return FasterWhisperBackend(cfg)
    if cfg.backend == "vllm":
        from asr_distill.asr.vllm_backend import shared_backend

        return shared_backend(cfg)
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


def prompt_label(cfg: InferenceConfig) -> Optional[str]:
    """The prompt recorded in transcripts: the configured one, or the vllm model family's default."""
    if cfg.prompt or cfg.backend != "vllm":
        return cfg.prompt
    from asr_distill.asr.families import family_for

    return family_for(cfg.model, cfg.model_family).default_instruction


def model_label(cfg: InferenceConfig) -> str:
    """The model name recorded in transcripts, known without loading the model."""
    if cfg.model:
        return cfg.model
    if cfg.backend == "vllm":
        from asr_distill.asr.families import family_for

        return family_for(None, cfg.model_family).default_model
    from asr_distill.models import EMBEDDED_MODEL_NAME

    return EMBEDDED_MODEL_NAME
